"""Where the local stack lives, which ports it uses and which credentials it hands out.

Every value can be overridden from the environment (`CLICKPULSE_*`), so a busy port or a CI
box never needs a code change. Passwords come from the environment when set; otherwise they are
generated once per state folder and kept in `<state>/secrets.env` (mode 0600), because a local
stack must not ship a well-known password on a port any local process can reach.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from clickpulse.stack import topology as topo

REPO_ROOT = Path(__file__).resolve().parents[2]

SECRET_NAMES = (
    "CLICKPULSE_CH_ADMIN_PASSWORD",
    "CLICKPULSE_CH_WRITER_PASSWORD",
    "CLICKPULSE_CH_READER_PASSWORD",
    # The user cluster nodes reach each other as (a cluster's nodes only).
    "CLICKPULSE_CH_CLUSTER_PASSWORD",
    "CLICKPULSE_PG_PASSWORD",
    # The CRUD API's administrator (admin@clickpulse.test): product writes, demo data.
    "CLICKPULSE_ADMIN_PASSWORD",
    # The monitor's PostgreSQL role (pg_monitor: reads statistics views, writes nothing).
    "CLICKPULSE_PG_MONITOR_PASSWORD",
)


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise SystemExit(f"{name}={port} is outside 1..65535")
    return port


# Each port's variable, by Ports field.
PORT_VARIABLES = {
    "clickhouse_http": ("CLICKPULSE_CH_HTTP_PORT", 8123),
    "clickhouse_native": ("CLICKPULSE_CH_NATIVE_PORT", 9000),
    "postgres": ("CLICKPULSE_PG_PORT", 5432),
    "otlp_grpc": ("CLICKPULSE_OTLP_GRPC_PORT", 4317),
    "otlp_http": ("CLICKPULSE_OTLP_HTTP_PORT", 4318),
    "collector_health": ("CLICKPULSE_COLLECTOR_HEALTH_PORT", 13133),
    "collector_metrics": ("CLICKPULSE_COLLECTOR_METRICS_PORT", 8888),
    "crud_api": ("CLICKPULSE_CRUD_API_PORT", 8001),
    "ecommerce_api": ("CLICKPULSE_ECOMMERCE_API_PORT", 8002),
}


@dataclass(frozen=True)
class Ports:
    clickhouse_http: int
    clickhouse_native: int
    postgres: int
    otlp_grpc: int
    otlp_http: int
    collector_health: int
    # The collector's own metrics, live (Prometheus text): the queue while ClickHouse is away.
    collector_metrics: int
    crud_api: int
    ecommerce_api: int

    @classmethod
    def from_env(cls) -> Ports:
        return cls(
            **{field: _port(name, default) for field, (name, default) in PORT_VARIABLES.items()}
        )

    def env(self) -> dict[str, str]:
        """The variables that give these ports to another process of the stack."""
        return {name: str(getattr(self, field)) for field, (name, _) in PORT_VARIABLES.items()}


def default_workers() -> int:
    """Worker processes per service: half the cores this process may use (the two services
    share them, beside PostgreSQL, the collector and ClickHouse), at least one."""
    return max(1, len(os.sched_getaffinity(0)) // 2)


def _workers() -> int:
    raw = os.environ.get("CLICKPULSE_SERVICE_WORKERS")
    if raw is None:
        return default_workers()
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        raise SystemExit(f"CLICKPULSE_SERVICE_WORKERS={raw!r} is not a number of processes 1..64")
    return int(raw)


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    ports: Ports
    service_workers: int = 1
    host: str = "127.0.0.1"
    pg_database: str = "clickpulse"
    pg_user: str = "clickpulse"
    pg_monitor_user: str = "clickpulse_monitor"
    ch_admin_user: str = "admin"
    ch_writer_user: str = "otel_writer"
    ch_reader_user: str = "analyst"
    topology: topo.Topology = topo.SINGLE_NODE
    # Where the nodes after the first take their ports (a cluster only).
    ch_cluster_base_port: int = topo.DEFAULT_CLUSTER_BASE_PORT
    # A host per node (compose's cluster profile); none: every node on `host`.
    ch_node_hosts: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> Settings:
        state = Path(os.environ.get("CLICKPULSE_STATE_DIR", REPO_ROOT / ".stack")).resolve()
        return cls(
            state_dir=state,
            ports=Ports.from_env(),
            service_workers=_workers(),
            topology=topo.topology_from_env(state),
            ch_cluster_base_port=topo.cluster_base_port(),
            ch_node_hosts=topo.node_hosts(),
        )

    @property
    def clickhouse_nodes(self) -> list[topo.Node]:
        """Node 1 on the ClickHouse ports above; in a cluster, the others after it."""
        return topo.nodes(
            self.topology,
            host=self.ch_host,
            http_port=self.ports.clickhouse_http,
            native_port=self.ports.clickhouse_native,
            base_port=self.ch_cluster_base_port,
            hosts=self.ch_node_hosts,
        )

    @property
    def clickhouse_dir(self) -> Path:
        """Data of the ClickHouse node(s): a cluster's nodes in a folder of their own per
        topology (a 2x2 cluster's shards are not a 3x2's; data is never resharded)."""
        if not self.topology.clustered:
            return self.state_dir / "clickhouse"
        return self.state_dir / f"clickhouse-{self.topology.label}"

    @property
    def ch_host(self) -> str:
        """Where ClickHouse answers; another host than ours only under compose."""
        return os.environ.get("CLICKPULSE_CH_HOST", self.host)

    @property
    def collector_metrics_level(self) -> str:
        """How much the collector says about itself (`none` turns its own metrics off; the
        bench's footprint section measures what `normal` costs)."""
        level = os.environ.get("CLICKPULSE_COLLECTOR_METRICS_LEVEL", "normal")
        if level not in ("none", "basic", "normal", "detailed"):
            raise SystemExit(
                f"CLICKPULSE_COLLECTOR_METRICS_LEVEL={level!r}:"
                " one of none, basic, normal, detailed"
            )
        return level

    @property
    def cache_dir(self) -> Path:
        """Built tools (the collector binary), shared by every state folder of this checkout."""
        return Path(os.environ.get("CLICKPULSE_CACHE_DIR", REPO_ROOT / ".stack" / "cache"))

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def secrets_file(self) -> Path:
        return self.state_dir / "secrets.env"

    @cached_property
    def secrets(self) -> dict[str, str]:
        """Passwords: environment first, then the state folder's file, else new ones."""
        stored: dict[str, str] = {}
        if self.secrets_file.exists():
            for line in self.secrets_file.read_text().splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    stored[key.strip()] = value.strip()
        values = {
            name: os.environ.get(name) or stored.get(name) or secrets.token_urlsafe(18)
            for name in SECRET_NAMES
        }
        if values != stored:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.writelines(f"{k}={v}\n" for k, v in values.items())
        return values

    @property
    def ch_admin_password(self) -> str:
        return self.secrets["CLICKPULSE_CH_ADMIN_PASSWORD"]

    @property
    def ch_writer_password(self) -> str:
        return self.secrets["CLICKPULSE_CH_WRITER_PASSWORD"]

    @property
    def ch_reader_password(self) -> str:
        return self.secrets["CLICKPULSE_CH_READER_PASSWORD"]

    @property
    def ch_cluster_password(self) -> str:
        return self.secrets["CLICKPULSE_CH_CLUSTER_PASSWORD"]

    @property
    def pg_password(self) -> str:
        return self.secrets["CLICKPULSE_PG_PASSWORD"]

    @property
    def pg_monitor_password(self) -> str:
        return self.secrets["CLICKPULSE_PG_MONITOR_PASSWORD"]

    # Where the monitor reaches what it watches: the local stack's addresses, unless set
    # (compose sets them to the containers' names).
    @property
    def pg_monitor_dsn(self) -> str:
        """The monitor's PostgreSQL connection (asyncpg's form)."""
        return os.environ.get("CLICKPULSE_MONITOR_PG_DSN") or (
            f"postgresql://{self.pg_monitor_user}:{self.pg_monitor_password}@{self.host}:"
            f"{self.ports.postgres}/{self.pg_database}"
        )

    @property
    def monitor_otlp_endpoint(self) -> str:
        return os.environ.get("CLICKPULSE_MONITOR_OTLP_ENDPOINT") or (
            f"http://{self.host}:{self.ports.otlp_grpc}"
        )

    @property
    def monitor_dir(self) -> Path:
        """The monitor's alert states, their transitions and its heartbeat."""
        return self.state_dir / "monitor"

    @property
    def collector_metrics_url(self) -> str:
        return os.environ.get("CLICKPULSE_MONITOR_COLLECTOR_METRICS_URL") or (
            f"http://{self.host}:{self.ports.collector_metrics}/metrics"
        )

    @property
    def alert_webhook_url(self) -> str | None:
        """Where the monitor posts firing and resolved alerts (Grafana's webhook payload)."""
        return os.environ.get("CLICKPULSE_ALERT_WEBHOOK_URL") or None

    @property
    def admin_password(self) -> str:
        return self.secrets["CLICKPULSE_ADMIN_PASSWORD"]

    @property
    def jwt_keys_dir(self) -> Path:
        return self.state_dir / "jwt-keys"

    @property
    def postgres_dsn(self) -> str:
        return (
            f"postgresql+asyncpg://{self.pg_user}:{self.pg_password}@{self.host}:"
            f"{self.ports.postgres}/{self.pg_database}"
        )

    def service_env(self) -> dict[str, str]:
        """What the two web services read (clickpulse_services.common.settings)."""
        return {
            "CLICKPULSE_DATABASE_URL": self.postgres_dsn,
            "CLICKPULSE_OTLP_ENDPOINT": f"http://{self.host}:{self.ports.otlp_grpc}",
            "CLICKPULSE_CRUD_API_URL": f"http://{self.host}:{self.ports.crud_api}",
            "CLICKPULSE_JWT_KEYS_DIR": str(self.jwt_keys_dir),
            "CLICKPULSE_ADMIN_PASSWORD": self.admin_password,
        }
