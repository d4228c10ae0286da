"""The seed's example queries (clickhouse/queries/) and the per-minute rollup, run as the
read-only analyst against what the services produced."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from clickpulse.stack.settings import REPO_ROOT

QUERIES = REPO_ROOT / "clickhouse" / "queries"


@pytest.fixture(scope="module", autouse=True)
def _traffic(traffic: dict[str, Any]) -> None:
    """Every query below needs a user who browsed and bought."""


def _run(reader: Client, name: str) -> tuple[list[str], list[Any]]:
    result = reader.query((QUERIES / f"{name}.sql").read_text())
    return list(result.column_names), list(result.result_rows)


def test_requests_per_minute(reader: Client, wait_for: Callable[..., Any]) -> None:
    wait_for(lambda: _run(reader, "requests_per_minute")[1])
    columns, rows = _run(reader, "requests_per_minute")
    assert columns == ["minute", "requests"]
    assert rows and all(count > 0 for _, count in rows)
    assert [m for m, _ in rows] == sorted(m for m, _ in rows)


def test_top_endpoints_by_latency(reader: Client) -> None:
    columns, rows = _run(reader, "top_endpoints_by_latency")
    assert columns == ["endpoint", "avg_latency", "p95_latency"]
    endpoints = {row[0] for row in rows}
    assert "POST /checkout" in endpoints
    assert "GET /products/{product_id}" in endpoints
    assert all(avg > 0 and p95 > 0 for _, avg, p95 in rows)
    assert [avg for _, avg, _ in rows] == sorted((avg for _, avg, _ in rows), reverse=True)


def test_revenue_per_hour(reader: Client, wait_for: Callable[..., Any]) -> None:
    wait_for(lambda: _run(reader, "revenue_per_hour")[1])
    columns, rows = _run(reader, "revenue_per_hour")
    assert columns == ["hour", "revenue"]
    assert sum(revenue for _, revenue in rows) >= 24.0


def test_the_rollups_agree_with_the_raw_rows(reader: Client) -> None:
    raw = reader.query(
        "SELECT count(), countIf(status_code >= 500), sumIf(transaction_amount, status_code < 400)"
        " FROM analytics.request_metrics"
    ).result_rows[0]
    for rollup in ("analytics.request_metrics_1m", "analytics.request_metrics_1h"):
        rolled = reader.query(
            "SELECT sum(requests), sum(server_errors), sum(revenue),"
            " arraySum(mapValues(sumMap(latency_histogram)))"
            f" FROM {rollup}"
        ).result_rows[0]
        assert rolled[0] == raw[0]
        assert rolled[1] == raw[1]
        assert rolled[2] == pytest.approx(raw[2])
        assert rolled[3] == raw[0], "every request is counted in one latency bucket"


def test_histogram_quantiles_are_within_a_bucket_of_the_exact_ones(reader: Client) -> None:
    for service, endpoint in reader.query(
        "SELECT DISTINCT service_name, endpoint FROM analytics.request_metrics"
    ).result_rows:
        where = {"s": service, "e": endpoint}
        # Nearest rank (the ceil(q*n)-th request), as the histogram counts ranks.
        # quantilesExactLow takes the request after it: on a small sample with a slow outlier
        # last, p99 of 100 requests would be that outlier for one and not the other.
        exact = reader.query(
            "SELECT arrayMap(q -> s[toUInt64(greatest(ceil(q * length(s)), 1))],"
            " [0.5, 0.95, 0.99]), length(s)"
            " FROM (SELECT arraySort(groupArray(response_time_ms)) AS s"
            " FROM analytics.request_metrics WHERE service_name = {s:String}"
            " AND endpoint = {e:String})",
            parameters=where,
        ).result_rows[0]
        approx = reader.query(
            "SELECT [clickpulse_latency_quantile(sumMap(latency_histogram), 0.5),"
            " clickpulse_latency_quantile(sumMap(latency_histogram), 0.95),"
            " clickpulse_latency_quantile(sumMap(latency_histogram), 0.99)]"
            " FROM analytics.request_metrics_1m WHERE service_name = {s:String}"
            " AND endpoint = {e:String}",
            parameters=where,
        ).result_rows[0][0]
        # Buckets are 2^(1/8) wide; the exact quantile may sit in the next bucket when the rank
        # falls between two requests, hence two buckets of slack.
        slack = 2 ** (2 / 8)
        for level, true, estimate in zip((0.5, 0.95, 0.99), exact[0], approx, strict=True):
            assert true / slack <= estimate <= true * slack, (service, endpoint, level, exact)


def test_audience_states_agree_with_the_raw_rows(reader: Client) -> None:
    raw = reader.query(
        "SELECT uniqExactIf(user_id, user_id != ''), uniqExactIf(session_id, session_id != ''),"
        " uniqExactIf(session_id, session_id != '' AND method = 'POST' AND endpoint = '/cart'"
        "   AND status_code < 400),"
        " uniqExactIf(session_id, session_id != '' AND endpoint = '/checkout'"
        "   AND status_code < 400)"
        " FROM analytics.request_metrics"
    ).result_rows[0]
    hourly = reader.query(
        "SELECT uniqCombinedMerge(12)(users), uniqCombinedMerge(12)(sessions),"
        " uniqCombinedMerge(12)(sessions_added_to_cart),"
        " uniqCombinedMerge(12)(sessions_checked_out) FROM analytics.audience_1h"
    ).result_rows[0]
    assert all(raw), raw
    # HyperLogLog with 2^12 cells: ~1.6 % standard error once past a few hundred values;
    # 5 % is three standard errors. A state of the wrong column is off by far more.
    assert hourly == pytest.approx(raw, rel=0.05)


def _cli(*args: str) -> list[dict[str, str]]:
    """Rows of `nox -s sql`'s command, piped (TSV with a header), as the README runs it."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "clickpulse.stack", "sql", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    return [dict(zip(header.split("\t"), line.split("\t"), strict=True)) for line in lines]


def test_the_readme_tasks_slowest_checkout_its_trace_and_a_sessions_errors(
    traffic: dict[str, Any],
) -> None:
    checkouts = _cli("--file", str(QUERIES / "slowest_checkouts.sql"), "--param", "hours=1")
    assert 1 <= len(checkouts) <= 10
    durations = [float(row["ms"]) for row in checkouts]
    assert durations == sorted(durations, reverse=True)

    spans = _cli(
        "--file",
        str(QUERIES / "trace_spans.sql"),
        "--param",
        f"trace_id={checkouts[0]['trace_id']}",
    )
    assert (spans[0]["service"], spans[0]["span"]) == ("ecommerce-api", "POST /checkout")
    assert {"ecommerce-api", "crud-api"} <= {span["service"] for span in spans}
    assert [s["started"] for s in spans] == sorted(s["started"] for s in spans)
    ids = {span["span_id"] for span in spans}
    assert all(span["parent_id"] in ids for span in spans[1:]), "one tree, root first"

    errors = _cli(
        "--file",
        str(QUERIES / "session_errors.sql"),
        "--param",
        f"session_id={traffic['session_id']}",
    )
    assert {(row["endpoint"], row["status_code"]) for row in errors} == {
        ("/products/{product_id}", "404"),
        ("/products", "500"),
    }
