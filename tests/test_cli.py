"""The stack commands as a user types them (through `python -m clickpulse.stack`, which the
nox sessions call)."""

from __future__ import annotations

import subprocess
import sys

from clickpulse.stack.settings import REPO_ROOT

NAMES = ("clickhouse", "postgres", "collector", "crud-api", "ecommerce-api")


def stack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clickpulse.stack", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_status_shows_every_component_healthy() -> None:
    result = stack("status")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in NAMES:
        line = next(line for line in result.stdout.splitlines() if f" {name} " in line)
        assert "yes" in line and "127.0.0.1" in line


def test_up_is_idempotent() -> None:
    result = stack("up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("already running") == len(NAMES)


def test_sql_prints_a_table_as_the_reader() -> None:
    result = stack("sql", "SELECT currentUser() AS who, count() AS spans FROM otel.otel_traces")
    assert result.returncode == 0, result.stderr
    assert "who" in result.stdout and "spans" in result.stdout
    assert "analyst" in result.stdout
    assert "1 row(s)" in result.stdout


def test_sql_errors_are_clear_and_write_nothing() -> None:
    result = stack("sql", "DROP TABLE otel.otel_traces")
    assert result.returncode == 1
    assert "error:" in result.stdout
    assert "readonly" in result.stdout.lower() or "ACCESS_DENIED" in result.stdout
    typo = stack("sql", "SELEC 1")
    assert typo.returncode == 1
    assert "SYNTAX_ERROR" in typo.stdout


def test_logs_of_an_unknown_component_names_the_known_ones() -> None:
    result = stack("logs", "grafanaa")
    assert result.returncode == 1
    assert ", ".join(NAMES) in result.stdout
