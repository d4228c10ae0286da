"""compose.yaml, loaded by compose-go (the loader Docker Compose uses), since no Docker engine
runs here: it must be valid and run the same components with the same config files."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clickpulse.stack import collector_build
from clickpulse.stack.cli import COMPOSE_CLUSTER, compose_env
from clickpulse.stack.components import KEEP_ALIVE_OPTION
from clickpulse.stack.processes import StackError
from clickpulse.stack.settings import REPO_ROOT, Settings
from clickpulse.stack.topology import Topology

LONG_RUNNING = {
    "clickhouse",
    "postgres",
    "collector",
    "crud-api",
    "ecommerce-api",
    "gateway",
    "grafana",
    "monitor",
    "alert-receiver",
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


def test_the_collector_runs_with_the_local_stacks_go_runtime_settings(
    services: dict[str, Any],
) -> None:
    environment = services["collector"]["environment"]
    for variable, value in collector_build.GO_RUNTIME_ENV.items():
        assert environment.get(variable) == value, variable


def test_the_analytics_pipeline_yields_the_cpu_to_the_request_path(
    services: dict[str, Any],
) -> None:
    """As the local stack's niceness 10: a tenth of the default share (1024)."""
    for name in ("collector", "clickhouse"):
        assert services[name].get("cpu_shares") == 102, name
    for name in ("postgres", "crud-api", "ecommerce-api", "gateway"):
        assert "cpu_shares" not in services[name], name


def test_idle_connections_outlive_the_gateways_pool_as_in_the_local_stack(
    services: dict[str, Any],
) -> None:
    for name in ("crud-api", "ecommerce-api"):
        command = services[name]["command"]
        at = command.index(KEEP_ALIVE_OPTION[0])
        assert tuple(command[at : at + 2]) == KEEP_ALIVE_OPTION, name
    conf = (REPO_ROOT / "services" / "nginx" / "nginx.conf").read_text()
    pools = re.findall(r"keepalive_timeout (\d+)s;", conf)
    assert len(pools) == 2 and all(int(p) < int(KEEP_ALIVE_OPTION[1]) for p in pools), pools


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


CLUSTER_NODES = ("clickhouse", "clickhouse-s1c2", "clickhouse-s2c1", "clickhouse-s2c2")


@pytest.fixture(scope="module")
def cluster_services(
    secrets_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """What `nox -s up -- --compose --shards 2 --copies 2` loads: the profile and topology."""
    state = tmp_path_factory.mktemp("compose-cluster-state")
    env = compose_env(dataclasses.replace(Settings.from_env(), state_dir=state), COMPOSE_CLUSTER)
    assert "cluster" in env["COMPOSE_PROFILES"].split(",")
    result = _run({**secrets_env, **env}, *env["COMPOSE_PROFILES"].split(","))
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    return {m["target"]: m["source"] for m in service.get("volumes", []) if m["type"] == "bind"}


def test_one_node_without_the_cluster_profile(services: dict[str, Any]) -> None:
    assert not set(CLUSTER_NODES[1:]) & set(services) and "keeper" not in services
    mounts = _mounts(services["clickhouse"])
    for target in (
        "/etc/clickhouse-server/config.d/topology.xml",
        "/etc/clickhouse-server/users.d/topology.xml",
    ):
        assert "/clickhouse/topology/single/" in mounts[target]
        assert ET.parse(mounts[target]).getroot().findall("*") == [], target
    assert services["collector"]["environment"]["CLICKPULSE_CH_ENDPOINT"] == (
        "tcp://clickhouse:9000?dial_timeout=5s"
    )
    assert "CLICKPULSE_CH_SHARDS" not in services["clickhouse-migrations"]["environment"]


def test_the_cluster_profile_runs_two_replicated_shards_through_keeper(
    cluster_services: dict[str, Any],
) -> None:
    assert set(CLUSTER_NODES) | {"keeper"} <= set(cluster_services)
    config_file = _mounts(cluster_services["clickhouse"])[
        "/etc/clickhouse-server/config.d/topology.xml"
    ]
    config = ET.parse(config_file).getroot()
    shards = config.findall("./remote_servers/clickpulse/shard")
    assert [s.findtext("internal_replication") for s in shards] == ["true", "true"]
    hosts = [[r.findtext("host") for r in s.findall("replica")] for s in shards]
    assert hosts == [list(CLUSTER_NODES[:2]), list(CLUSTER_NODES[2:])]
    assert config.findtext("./zookeeper/node/host") == "keeper"
    places = set()
    for name in CLUSTER_NODES:
        node = cluster_services[name]
        env = node["environment"]
        places.add((env["CLICKPULSE_CH_SHARD"], env["CLICKPULSE_CH_REPLICA"]))
        # Replicas fetch parts from each other by hostname.
        assert node["hostname"] == name
        mounts = _mounts(node)
        assert mounts["/etc/clickhouse-server/config.d/topology.xml"] == config_file
        assert mounts["/etc/clickhouse-server/users.d/topology.xml"].endswith(
            "clickhouse/topology/cluster/users.xml"
        )
        assert mounts["/etc/clickhouse-server/users.xml"].endswith("clickhouse/users.xml")
        for variable in re.findall(r'from_env="([A-Z0-9_]+)"', Path(config_file).read_text()):
            assert variable in env, (name, variable)
        data = [m for m in node["volumes"] if m["type"] == "volume"]
        assert [m["target"] for m in data] == ["/var/lib/clickhouse"]
    assert places == {("1", "c1"), ("1", "c2"), ("2", "c1"), ("2", "c2")}
    # Node 1 is the only one published: readers (Grafana, the load audit) are unchanged.
    assert all(not cluster_services[n].get("ports") for n in CLUSTER_NODES[1:])
    assert cluster_services["keeper"]["healthcheck"]["test"]
    assert "keeper" in cluster_services["clickhouse-s2c2"]["depends_on"]


def test_in_the_cluster_profile_the_collector_and_migrations_reach_every_node(
    cluster_services: dict[str, Any], tmp_path: Path
) -> None:
    endpoint = cluster_services["collector"]["environment"]["CLICKPULSE_CH_ENDPOINT"]
    assert endpoint.startswith("tcp://" + ",".join(f"{n}:9000" for n in CLUSTER_NODES) + "?")
    assert "connection_open_strategy=round_robin" in endpoint
    job = cluster_services["clickhouse-migrations"]
    env = job["environment"]
    assert (env["CLICKPULSE_CH_SHARDS"], env["CLICKPULSE_CH_COPIES"]) == ("2", "2")
    assert env["CLICKPULSE_CH_REPLICATION"] == "keeper"
    assert env["CLICKPULSE_CH_NODE_HOSTS"].split(",") == list(CLUSTER_NODES)
    assert set(CLUSTER_NODES) <= set(job["depends_on"])
    # The job's settings resolve to those nodes, ReplicatedMergeTree shards among them.
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update({k: v for k, v in saved.items() if not k.startswith("CLICKPULSE_")})
    os.environ.update({**env, "CLICKPULSE_STATE_DIR": str(tmp_path)})
    try:
        settings = Settings.from_env()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert [(n.host, n.http_port) for n in settings.clickhouse_nodes] == [
        (n, 8123) for n in CLUSTER_NODES
    ]
    assert settings.topology == COMPOSE_CLUSTER


def test_other_cluster_shapes_are_refused_for_compose(tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings.from_env(), state_dir=tmp_path)
    with pytest.raises(StackError, match="runs 2 shard"):
        compose_env(settings, Topology(shards=3, copies=2, replication="keeper"))


def test_grafana_evaluates_the_alert_rules_and_notifies_the_local_receiver(
    services: dict[str, Any],
) -> None:
    grafana = services["grafana"]
    assert grafana["environment"]["CLICKPULSE_ALERT_WEBHOOK_URL"] == "http://alert-receiver:9095/"
    mounts = {m["target"]: m["source"] for m in grafana["volumes"] if m["type"] == "bind"}
    provisioning = Path(mounts["/etc/grafana/provisioning"])
    assert (provisioning / "alerting" / "clickpulse.yaml").exists()
    assert services["alert-receiver"]["command"][-4:] == ["--host", "0.0.0.0", "--port", "9095"]
    # The monitor samples PostgreSQL there too, reaching the containers by name; Grafana
    # notifies, so the monitor does not (no webhook of its own).
    monitor = services["monitor"]
    assert monitor["command"] == ["python", "-m", "clickpulse.monitoring", "monitor"]
    env = monitor["environment"]
    assert env["CLICKPULSE_MONITOR_PG_DSN"].startswith("postgresql://clickpulse:")
    assert env["CLICKPULSE_MONITOR_PG_DSN"].endswith("@postgres:5432/clickpulse")
    assert env["CLICKPULSE_MONITOR_OTLP_ENDPOINT"] == "http://collector:4317"
    assert env["CLICKPULSE_MONITOR_COLLECTOR_METRICS_URL"] == "http://collector:8888/metrics"
    assert env["CLICKPULSE_CH_HOST"] == "clickhouse"
    assert "CLICKPULSE_ALERT_WEBHOOK_URL" not in env
    dockerfile = (REPO_ROOT / "services" / "Dockerfile").read_text()
    assert "COPY grafana ./grafana" in dockerfile  # the rules' macros
