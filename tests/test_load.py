"""`nox -s load`: the k6 runner against the running stack, its config validation, its audit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from clickpulse_load.config import load_config
from clickpulse_load.k6 import K6_GOGC, k6_environment
from clickpulse_load.plan import RESTOCK_TO, build_plan, seed
from conftest import bearer, crud_url

from clickpulse.stack.settings import REPO_ROOT, Settings

CONFIG = REPO_ROOT / "load" / "config.yaml"


def _load(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # The stack's ports and state folder travel along: the runner finds the services and
    # ClickHouse wherever this test run's stack is.
    stack = {k: v for k, v in os.environ.items() if k.startswith("CLICKPULSE_")}
    return subprocess.run(
        [sys.executable, "-m", "clickpulse_load", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "160", "HOME": str(Path.home()), **stack},
    )


def _explain(result: subprocess.CompletedProcess[str], report: Path) -> str:
    """What a failed run said: its figures (the tables are too wide to read in a diff)."""
    facts = report.read_text() if report.exists() else "(no report)"
    return f"{facts}\n{result.stdout[-1500:]}\n{result.stderr[-1500:]}"


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
        (
            lambda c: c["simulation"].update(request_timeout="soon"),
            "simulation.request_timeout: 'soon' is not a duration",
        ),
        (
            lambda c: c["simulation"].update(request_timeout="0s"),
            "simulation.request_timeout: must be more than 0",
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
    assert result.returncode == 0, _explain(result, report)
    facts = json.loads(report.read_text())
    assert facts["achieved_rps"] == pytest.approx(100, rel=0.02)
    audit = facts["audit"]
    assert audit["sent"] > 5000
    assert audit["sent"] == audit["landed"]
    assert audit["missing"] == 0
    assert "ingestion audit" in result.stdout and "latency per endpoint" in result.stdout
    assert "POST /checkout" in result.stdout
    # Each session signed in once, and the default scenario stays under the rate limits.
    assert "POST /auth/token" in result.stdout
    assert facts["rate_limited"] == 0
    assert facts["target_missed"] is False and facts["missed_reasons"] == []
    assert audit["duplicates"] == 0 and audit["abandoned"] == 0
    # Not a terminal: k6 runs with --quiet, so its once-a-second progress lines stay out.
    assert "running (" not in result.stdout + result.stderr


def test_an_unreachable_rate_exits_4_naming_the_vu_cap(tmp_path: Path) -> None:
    """Two workers cannot hold 2,000 req/s: the runner must say the target was missed, and
    why, instead of "all good"."""

    def capped(raw: dict[str, Any]) -> None:
        raw["simulation"].update(workers=2, ramp_up="0s")

    report = tmp_path / "report.json"
    result = _load(
        "--config",
        str(_config_with(tmp_path, capped)),
        "--rps",
        "2000",
        "--duration",
        "10s",
        "--json",
        str(report),
        timeout=180,
    )
    output = " ".join(result.stdout.split())
    assert result.returncode == 4, _explain(result, report)
    assert "target missed" in output and "VU cap reached" in output
    assert "all good" not in output
    facts = json.loads(report.read_text())
    assert facts["target_missed"] is True
    assert facts["missed_reasons"][0].startswith("VU cap reached")
    assert facts["vus_max"] == 2 and facts["dropped_iterations"] > 0
    assert facts["target_rps"] == 2000 and facts["achieved_rps"] < 0.98 * 2000
    assert facts["audit"]["missing"] == 0


def test_requests_the_client_gives_up_on_are_abandoned_not_duplicates(tmp_path: Path) -> None:
    """With a 1 ms client timeout, k6 gives up on requests the services still answer: their
    spans land without being counted as sent, and the audit must say so, not call them
    duplicates or lose track of the ones that were answered."""

    def impatient(raw: dict[str, Any]) -> None:
        # 1 ms, not 5: on a fast machine the mix answered 99 % of its requests within 5 ms at
        # 20 req/s (p99 4.97 ms), so too few were abandoned for the rate to fall short.
        raw["simulation"].update(request_timeout="1ms", ramp_up="0s")

    report = tmp_path / "report.json"
    result = _load(
        "--config",
        str(_config_with(tmp_path, impatient)),
        "--rps",
        "20",
        "--duration",
        "10s",
        "--json",
        str(report),
        timeout=180,
    )
    output = " ".join(result.stdout.split())
    assert result.returncode != 1, _explain(result, report)
    facts = json.loads(report.read_text())
    audit = facts["audit"]
    assert facts["abandoned"] > 0
    assert audit["abandoned_by_client"] == facts["abandoned"]
    assert 0 < audit["abandoned"] <= facts["abandoned"]
    assert audit["duplicates"] == 0
    assert audit["missing"] == 0
    assert audit["unexplained"] == 0
    assert audit["landed_distinct"] == audit["sent"] + audit["abandoned"]
    assert "abandoned by the client, answered by the server" in output
    # The answered rate falls short of the target, and the report says it is the timeouts.
    assert result.returncode == 4, _explain(result, report)
    assert any("got no answer" in reason for reason in facts["missed_reasons"])
    # k6 logs one warning per failed request; the runner prints each kind once, with a count.
    assert "level=warning" not in result.stdout + result.stderr
    assert output.count("Request Failed: request timeout") == 1


def test_vus_follow_the_rate_and_the_latency_margin_not_the_think_time() -> None:
    config = load_config(CONFIG)
    config.simulation.requests_per_second = 1000
    plan = build_plan(
        config,
        run_id="sizing",
        users=[{"id": 1, "email": "a@demo.clickpulse.test"}],
        product_ids=[1],
    )
    # The default workers hold 1,000 req/s, with room for k6 to add VUs when latency rises.
    assert plan["pre_allocated_vus"] < plan["max_vus"] <= 600
    for user_type in config.user_types:
        user_type.think_time_seconds = (30.0, 60.0)
    thinking = build_plan(
        config,
        run_id="sizing",
        users=[{"id": 1, "email": "a@demo.clickpulse.test"}],
        product_ids=[1],
    )
    assert thinking["pre_allocated_vus"] == plan["pre_allocated_vus"]


@pytest.mark.no_stack
def test_k6_collects_garbage_less_often_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOGC", raising=False)
    monkeypatch.setenv("CLICKPULSE_PROBE", "kept")
    environment = k6_environment()
    assert environment["GOGC"] == K6_GOGC != "100"
    assert environment["CLICKPULSE_PROBE"] == "kept"
    monkeypatch.setenv("GOGC", "150")
    assert k6_environment()["GOGC"] == "150"


def test_base_urls_default_to_the_local_stack_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKPULSE_CRUD_API_PORT", "18001")
    monkeypatch.setenv("CLICKPULSE_ECOMMERCE_API_PORT", "18002")
    config = load_config(CONFIG)
    assert config.endpoints["crud_service"].url == "http://127.0.0.1:18001"
    assert config.endpoints["ecommerce_service"].url == "http://127.0.0.1:18002"


def test_seeding_restocks_products_a_run_could_sell_out(
    settings: Settings, admin_token: str
) -> None:
    """Checkouts take stock and nothing gave it back: after some runs the popular products were
    sold out and every checkout a 409."""
    config = load_config(CONFIG)
    _users, product_ids = seed(config)
    low = product_ids[0]
    url = f"{crud_url(settings)}/products/{low}"
    httpx.put(url, json={"stock": 3}, headers=bearer(admin_token)).raise_for_status()
    _users, again = seed(config)
    assert low in again
    assert httpx.get(url).json()["stock"] == RESTOCK_TO
