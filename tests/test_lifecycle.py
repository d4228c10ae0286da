"""A second, throw-away stack in its own state folder and ports: restart keeps data, `down`
leaves no process behind, a busy port is named with its holder, and migrations are safe."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from clickpulse.stack.clickhouse_client import admin_client
from clickpulse.stack.components import PIPELINE_NICENESS, all_components
from clickpulse.stack.processes import ManagedProcess, StackError, free_port
from clickpulse.stack.settings import PORT_VARIABLES, REPO_ROOT, Settings

# Every port the stack opens, on a free one: a port missing here would clash with this stack.
PORT_VARS = tuple(name for name, _ in PORT_VARIABLES.values())


@pytest.fixture
def isolated_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "CLICKPULSE_STATE_DIR": str(tmp_path / "state"),
        "COLUMNS": "200",
        **{name: str(free_port()) for name in PORT_VARS},
    }
    for key in list(env):
        if key.endswith("_PASSWORD"):
            del env[key]
    # postgres runs as its own user under root: the folder must be reachable by it.
    tmp_path.chmod(0o755)
    yield env
    subprocess.run(
        [sys.executable, "-m", "clickpulse.stack", "down"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=120,
    )


def _stack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clickpulse.stack", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _settings(env: dict[str, str]) -> Settings:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return Settings.from_env()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _processes_of(state_dir: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if state_dir in cmdline:
            found.append(f"{proc.pid}: {cmdline[:100]}")
    return found


def test_data_survives_down_and_up_and_down_leaves_nothing(isolated_env: dict[str, str]) -> None:
    up = _stack(isolated_env, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    settings = _settings(isolated_env)
    admin = admin_client(settings)
    admin.command(
        "CREATE TABLE IF NOT EXISTS otel.survivor (n UInt32) ENGINE = MergeTree ORDER BY n"
    )
    admin.insert("otel.survivor", [[1], [2], [3]], column_names=["n"])

    down = _stack(isolated_env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert _processes_of(isolated_env["CLICKPULSE_STATE_DIR"]) == []

    again = _stack(isolated_env, "up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" not in again.stdout
    admin = admin_client(settings)
    assert admin.query("SELECT sum(n) FROM otel.survivor").result_rows[0][0] == 6
    applied = admin.query("SELECT count() FROM clickpulse_meta.schema_migrations").result_rows
    assert applied[0][0] == len(list((REPO_ROOT / "clickhouse" / "migrations").glob("*.sql")))

    assert _stack(isolated_env, "down").returncode == 0
    assert _processes_of(isolated_env["CLICKPULSE_STATE_DIR"]) == []
    status = _stack(isolated_env, "status")
    assert status.returncode == 1
    assert status.stdout.count(" no ") >= 5


def test_a_busy_port_is_named_with_its_holder(isolated_env: dict[str, str]) -> None:
    port = int(isolated_env["CLICKPULSE_CH_HTTP_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = _stack(isolated_env, "up")
    assert result.returncode == 1
    assert f"port {port}" in result.stdout
    assert f"pid {os.getpid()}" in result.stdout
    assert _processes_of(isolated_env["CLICKPULSE_STATE_DIR"]) == []


def test_an_applied_migration_cannot_change(tmp_path: Path, admin: object) -> None:
    from clickpulse.stack import migrations

    folder = tmp_path / "migrations"
    folder.mkdir()
    probe = folder / "9001_probe.sql"
    probe.write_text("-- a probe\nCREATE DATABASE IF NOT EXISTS probe_db;\n")
    settings = Settings.from_env()
    client = admin_client(settings)
    try:
        assert migrations.apply(client, folder) == ["9001_probe"]
        assert migrations.apply(client, folder) == []
        probe.write_text("CREATE DATABASE IF NOT EXISTS probe_db_changed;\n")
        with pytest.raises(StackError, match="changed after it was applied"):
            migrations.apply(client, folder)
    finally:
        client.command("DROP DATABASE IF EXISTS probe_db")
        client.command(
            "ALTER TABLE clickpulse_meta.schema_migrations DELETE WHERE version = '9001_probe'"
        )


def test_without_go_the_collector_build_says_what_to_install(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**isolated_env, "PATH": "/usr/bin:/bin", "CLICKPULSE_CACHE_DIR": str(tmp_path / "cache")}
    result = _stack(env, "up")
    assert result.returncode == 1
    text = " ".join(result.stdout.split())
    assert "needs a Go toolchain" in text and "--compose" in text
    assert _processes_of(isolated_env["CLICKPULSE_STATE_DIR"]) == []


@pytest.mark.no_stack
def test_a_process_is_still_found_after_the_wall_clock_steps_and_a_recycled_pid_is_not(
    tmp_path: Path,
) -> None:
    log = tmp_path / "sleeper.log"
    sleeper = ManagedProcess(
        "sleeper",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        log,
        tmp_path / "pid",
        tmp_path,
    )
    proc = sleeper.start()
    try:
        record = json.loads(sleeper.pid_file.read_text())
        # As the record reads once the clock has stepped 21 s (the boot time moves with it):
        # the same process, started as many seconds after boot.
        stepped = {**record, "create_time": record["create_time"] - 21}
        sleeper.pid_file.write_text(json.dumps(stepped))
        assert sleeper.running() == proc
        # Another process that got the pid later started later by both clocks.
        later = {k: v + 30 if k != "pid" else v for k, v in record.items()}
        sleeper.pid_file.write_text(json.dumps(later))
        assert sleeper.running() is None
    finally:
        proc.kill()
        proc.wait(10)


def _session_niceness(pid: int) -> int | None:
    """The niceness of the session `pid` is in, where the kernel groups by session."""
    group = Path(f"/proc/{pid}/autogroup")
    if not group.exists():
        return None
    return int(group.read_text().split("nice")[1])


@pytest.mark.no_stack
def test_a_process_started_at_a_niceness_runs_there_with_every_thread_and_its_session(
    tmp_path: Path,
) -> None:
    """How the analytics pipeline yields the CPU to the request path: a niceness set after the
    start would miss the threads started meanwhile, and where the kernel shares the CPU
    between sessions first, a niceness without its session's changes nothing."""
    # A thread started first thing, as the Go runtime and ClickHouse do.
    script = (
        "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); "
        "time.sleep(60)"
    )
    niced = ManagedProcess(
        "niced",
        [sys.executable, "-c", script],
        tmp_path / "niced.log",
        tmp_path / "pid",
        tmp_path,
        niceness=7,
    )
    proc = niced.start()
    try:
        expected = min(19, os.nice(0) + 7)
        deadline = time.monotonic() + 10
        while proc.num_threads() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        threads = [psutil.Process(thread.id) for thread in proc.threads()]
        assert len(threads) == 2
        assert [thread.nice() for thread in threads] == [expected, expected]
        assert niced.at_its_niceness(proc)
        assert _session_niceness(proc.pid) in (None, 7)
    finally:
        proc.kill()
        proc.wait(10)


def test_the_stacks_analytics_pipeline_runs_below_its_request_path(settings: Settings) -> None:
    """The collector and ClickHouse yield the CPU to the services and PostgreSQL (see
    components.PIPELINE_NICENESS for what it is worth)."""
    processes = {c.process.name: c.process.running() for c in all_components(settings)}
    running = {name: proc for name, proc in processes.items() if proc is not None}
    pipeline = [name for name in running if name == "collector" or name.startswith("clickhouse")]
    request_path = ["postgres", "crud-api", "ecommerce-api"]
    assert pipeline and all(name in running for name in request_path)
    for name in pipeline:
        assert running[name].nice() == min(19, os.nice(0) + PIPELINE_NICENESS), name
        assert _session_niceness(running[name].pid) in (None, PIPELINE_NICENESS), name
    for name in request_path:
        assert running[name].nice() == os.nice(0), name
        assert _session_niceness(running[name].pid) in (None, 0), name
