"""compose.yaml, loaded by compose-go (the loader Docker Compose uses), since no Docker engine
runs here: it must be valid and run the same components with the same config files."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clickpulse.stack.cli import compose_env
from clickpulse.stack.settings import REPO_ROOT, Settings

LONG_RUNNING = {
    "clickhouse",
    "postgres",
    "collector",
    "crud-api",
    "ecommerce-api",
    "gateway",
    "grafana",
}


def _run(env: dict[str, str], *profiles: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["go", "run", ".", str(REPO_ROOT / "compose.yaml"), *profiles],
        cwd=REPO_ROOT / "tests" / "composecheck",
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.fixture(scope="module")
def secrets_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What `nox -s up -- --compose` passes: a signing key and the admin's password."""
    state = tmp_path_factory.mktemp("compose-state")
    return compose_env(dataclasses.replace(Settings.from_env(), state_dir=state))


@pytest.fixture(scope="module")
def load(secrets_env: dict[str, str]) -> Callable[..., dict[str, Any]]:
    def _load(*profiles: str) -> dict[str, Any]:
        result = _run(secrets_env, *profiles)
        assert result.returncode == 0, result.stderr
        loaded: dict[str, Any] = json.loads(result.stdout)
        return loaded

    return _load


@pytest.fixture(scope="module")
def services(load: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return load()


def test_the_load_generator_runs_with_the_load_profile_only(
    services: dict[str, Any], load: Callable[..., dict[str, Any]]
) -> None:
    assert "load" not in services
    generator = load("load")["load"]
    assert generator["profiles"] == ["load"]
    assert generator["entrypoint"] == ["python", "-m", "clickpulse_load"]
    assert generator["build"]["args"]["EXTRAS"] == "services,load"
    assert generator["environment"]["CLICKPULSE_LOAD_TARGET_HOST"] == "gateway"
    assert "gateway" in generator["depends_on"]
    # It seeds demo data as the administrator.
    assert generator["environment"]["CLICKPULSE_ADMIN_PASSWORD"]


def test_every_component_runs_with_a_health_check(services: dict[str, Any]) -> None:
    assert set(services) >= LONG_RUNNING
    for name in LONG_RUNNING:
        assert services[name].get("healthcheck", {}).get("test"), name


def test_ports_are_published_on_loopback_only(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", (name, port)


def test_config_files_are_the_local_stacks_own(services: dict[str, Any]) -> None:
    mounts = {
        (name, m["target"]): m["source"]
        for name, service in services.items()
        for m in service.get("volumes", [])
        if m["type"] == "bind"
    }
    for source in mounts.values():
        assert Path(source).exists(), source
    assert mounts[("clickhouse", "/etc/clickhouse-server/users.xml")].endswith(
        "clickhouse/users.xml"
    )
    assert mounts[("collector", "/etc/otelcol/config.yaml")].endswith("otel-collector/config.yaml")
    dockerfile = (REPO_ROOT / "otel-collector" / "Dockerfile").read_text()
    assert "COPY builder-config.yaml" in dockerfile


def test_the_collector_gets_every_variable_its_config_reads(services: dict[str, Any]) -> None:
    config = (REPO_ROOT / "otel-collector" / "config.yaml").read_text()
    wanted = set(re.findall(r"\$\{env:([A-Z0-9_]+)\}", config))
    assert wanted
    assert wanted <= set(services["collector"]["environment"])
    for variable in re.findall(
        r'from_env="([A-Z0-9_]+)"', (REPO_ROOT / "clickhouse" / "users.xml").read_text()
    ):
        assert variable in services["clickhouse"]["environment"]


def test_services_run_as_replicas_behind_the_nginx_gateway(services: dict[str, Any]) -> None:
    for name, port in (("crud-api", 8001), ("ecommerce-api", 8002)):
        service = services[name]
        assert service["deploy"]["replicas"] == 2, name
        assert not service.get("ports"), f"{name} is reached through the gateway only"
        assert "--workers" in service["command"], name
        published = {p["published"] for p in services["gateway"]["ports"]}
        assert str(port) in published, (name, published)
    conf = (REPO_ROOT / "services" / "nginx" / "nginx.conf").read_text()
    assert "server crud-api:8000 resolve" in conf and "server ecommerce-api:8000 resolve" in conf
    # The shop's own calls to the catalogue are balanced over the CRUD API's replicas too.
    assert services["ecommerce-api"]["environment"]["CLICKPULSE_CRUD_API_URL"] == (
        "http://gateway:8001"
    )


def test_the_services_get_the_signing_key_and_refuse_to_start_without_it(
    services: dict[str, Any], secrets_env: dict[str, str]
) -> None:
    for name in ("crud-api", "ecommerce-api"):
        env = services[name]["environment"]
        assert env["CLICKPULSE_JWT_PRIVATE_KEY"].startswith("-----BEGIN PRIVATE KEY-----")
        assert env["CLICKPULSE_ADMIN_PASSWORD"] == secrets_env["CLICKPULSE_ADMIN_PASSWORD"]
    missing = {k: v for k, v in os.environ.items() if not k.startswith("CLICKPULSE_")}
    result = _run(missing)
    assert result.returncode != 0
    assert (
        "CLICKPULSE_JWT_PRIVATE_KEY" in result.stderr and "nox -s up -- --compose" in result.stderr
    )
