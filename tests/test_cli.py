"""The stack commands as a user types them (through `python -m clickpulse.stack`, which the
nox sessions call)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from clickpulse.monitoring.clickhouse_query import ClickHouseQuery
from clickpulse.monitoring.pipeline_health import (
    CLICKHOUSE_SQL,
    FRESHNESS_SQL,
    POSTGRES_SQL,
    clickhouse_line,
    freshness_lines,
    postgres_line,
)
from clickpulse.stack.settings import REPO_ROOT, Settings

NAMES = ("clickhouse", "postgres", "collector", "crud-api", "ecommerce-api", "monitor")


def stack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clickpulse.stack", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        # The stack's ports and state folder come from CLICKPULSE_* when set (another stack on
        # the same machine); nothing else of the caller's environment.
        env={
            **{k: v for k, v in os.environ.items() if k.startswith("CLICKPULSE_")},
            "COLUMNS": "200",
            "PATH": "/usr/bin:/bin",
        },
    )


def test_status_shows_every_component_healthy() -> None:
    result = stack("status")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in NAMES:
        line = next(line for line in result.stdout.splitlines() if f" {name} " in line)
        assert "yes" in line and "127.0.0.1" in line


def test_status_shows_the_pipeline_beyond_liveness() -> None:
    out = stack("status").stdout
    assert "pipeline health" in out
    queue = next(line for line in out.splitlines() if "collector sending queue" in line)
    assert re.search(r"logs \d+ · metrics \d+ · traces \d+ items", queue), queue
    for what in ("newest request row", "visibility lag", "ClickHouse", "PostgreSQL", "alerts"):
        line = next(line for line in out.splitlines() if f" {what}" in line)
        assert "cannot tell" not in line, line
    assert re.search(r"\d+ firing, \d+ pending \(monitor, \d+ s ago\)", out), out
    assert re.search(r"\d+ sessions of 300", out), out


def test_no_recent_health_sample_says_so_instead_of_an_age_from_1970(
    settings: Settings, some_requests: int, wait_for: Callable[..., Any]
) -> None:
    """Right after `nox -s up` the monitor has not sampled yet and no request has landed: an
    aggregate over no rows is one row of defaults, which once read as "unreachable (1796006696
    s ago)" and "ingested 1,796,090,097 s ago (request at 00:00:00)"."""
    query = ClickHouseQuery(settings)

    def none_recent(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        # The same SQL, looking for samples newer than a minute from now: none exist.
        return query(sql.replace("now() - INTERVAL 10 MINUTE", "now() + INTERVAL 1 MINUTE"))

    assert "INTERVAL 10 MINUTE" in POSTGRES_SQL and "INTERVAL 10 MINUTE" in CLICKHOUSE_SQL
    assert postgres_line(none_recent).value == "no sample from the monitor in the last 10 minutes"
    assert clickhouse_line(none_recent).value == "no health sample in the last 10 minutes"

    def no_request(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        # The same SQL, looking for requests newer than a minute from now: none exist.
        return query(sql.replace("now() - INTERVAL 1 DAY", "now() + INTERVAL 1 MINUTE"))

    assert "now() - INTERVAL 1 DAY" in FRESHNESS_SQL
    assert freshness_lines(no_request)[0].value == "none in the last day"
    # And with the samples there, the same lines give their figures.
    assert "sessions of" in postgres_line(query).value
    assert "active parts" in clickhouse_line(query).value
    newest = wait_for(lambda: freshness_lines(query)[0].value.startswith("ingested "))
    assert newest, freshness_lines(query)


def test_up_is_idempotent() -> None:
    result = stack("up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("already running") == len(NAMES)


def test_sql_answers_as_the_reader() -> None:
    result = stack(
        "sql", "SELECT currentUser() AS who, count() > 0 AS has_spans FROM otel.otel_traces"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "who\thas_spans"
    assert result.stdout.splitlines()[1].startswith("analyst\t")


def test_sql_errors_are_clear_and_write_nothing() -> None:
    result = stack("sql", "DROP TABLE otel.otel_traces")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "error:" in result.stderr and "the analyst is read-only" in result.stderr
    typo = stack("sql", "SELEC 1")
    assert typo.returncode == 1
    assert "syntax error at line 1, column 1" in typo.stderr


@pytest.mark.skipif(shutil.which("nox") is None, reason="nox is not on PATH")
def test_nox_sql_keeps_its_own_log_out_of_the_result() -> None:
    """`nox -s sql -- ... > file`: the session hands over to the command, so the file gets the
    rows and nothing else, and errors stay on stderr."""
    env = {**os.environ, "NO_COLOR": "1"}
    ok = subprocess.run(
        ["nox", "-s", "sql", "--", "SELECT 1 AS one"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert (ok.returncode, ok.stdout) == (0, "one\n1\n"), ok.stderr
    assert "Running session sql" in ok.stderr
    bad = subprocess.run(
        ["nox", "-s", "sql", "--", "SELEC 1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert (bad.returncode, bad.stdout) == (1, "")
    assert "syntax error" in bad.stderr


def test_logs_of_an_unknown_component_names_the_known_ones() -> None:
    result = stack("logs", "grafanaa")
    assert result.returncode == 1
    assert ", ".join(NAMES) in result.stdout
