"""`nox -s load`: the k6 runner against the running stack, its config validation, its audit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clickpulse.stack.settings import REPO_ROOT

CONFIG = REPO_ROOT / "load" / "config.yaml"


def _load(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clickpulse_load", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "160", "HOME": str(Path.home())},
    )


def _config_with(tmp_path: Path, change: object) -> Path:
    raw = yaml.safe_load(CONFIG.read_text())
    change(raw)  # type: ignore[operator]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: c["endpoints"]["crud_service"]["endpoints"][0].update(path="/nope"),
            "endpoints.crud_service.endpoints[0].path: unknown endpoint '/nope'",
        ),
        (
            lambda c: [t.update(weight=0) for t in c["user_types"]],
            "user_types[*].weight: the weights sum to 0",
        ),
        (
            lambda c: c["simulation"].update(requests_per_second=-5),
            "Expected `float` > 0.0 - at `simulation.requests_per_second`",
        ),
        (
            lambda c: c["simulation"].update(duraton="10s"),
            "unknown field `duraton`",
        ),
        (
            lambda c: c["simulation"].update(duration="ten seconds"),
            "simulation.duration: 'ten seconds' is not a duration",
        ),
        (
            lambda c: c["endpoints"]["ecommerce_service"]["endpoints"][0].update(
                methods=["DELETE"]
            ),
            "endpoints.ecommerce_service.endpoints[0].methods: ['DELETE'] not supported",
        ),
        (
            lambda c: c["endpoints"]["crud_service"]["endpoints"][0].update(user_types=["ghost"]),
            "unknown user types ['ghost']",
        ),
    ],
)
def test_bad_config_fails_fast_naming_the_key(tmp_path: Path, change: object, message: str) -> None:
    result = _load("--config", str(_config_with(tmp_path, change)), timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in " ".join(result.stdout.split()), result.stdout


def test_negative_rps_on_the_command_line_is_refused() -> None:
    result = _load("--rps", "-1", timeout=60)
    assert result.returncode == 2
    assert "requests_per_second" in result.stdout


def test_a_minute_at_100_rps_holds_the_rate_and_loses_nothing(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = _load("--rps", "100", "--duration", "60s", "--json", str(report), timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    facts = json.loads(report.read_text())
    assert facts["achieved_rps"] == pytest.approx(100, rel=0.02)
    audit = facts["audit"]
    assert audit["sent"] > 5000
    assert audit["sent"] == audit["landed"]
    assert audit["missing"] == 0
    assert "ingestion audit" in result.stdout and "latency per endpoint" in result.stdout
    assert "POST /checkout" in result.stdout
