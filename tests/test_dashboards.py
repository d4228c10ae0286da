"""Every panel of every dashboard: valid Grafana JSON, generated from code, and its SQL
(macros expanded as the plugin does) answered by ClickHouse as the read-only analyst with the
shape the panel needs, after real traffic went through the services."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from clickpulse_grafana.dashboards import DASHBOARDS, DASHBOARDS_DIR, DATASOURCE, Panel, render
from clickpulse_grafana.macros import TimeRange, Variables, expand
from conftest import service_tracer_provider

from clickpulse.stack.settings import Settings

PANELS = [(name, panel) for name, board in DASHBOARDS.items() for panel in board.panels]


def _range(minutes: int = 60) -> TimeRange:
    now = datetime.now(UTC)
    return TimeRange(now - timedelta(minutes=minutes), now + timedelta(minutes=1))


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_committed_json_is_what_the_code_generates(name: str) -> None:
    assert (DASHBOARDS_DIR / f"{name}.json").read_text() == render(name), (
        "run `python -m clickpulse_grafana build` and commit grafana/dashboards/"
    )


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_dashboard_json_imports_cleanly(name: str) -> None:
    board = json.loads((DASHBOARDS_DIR / f"{name}.json").read_text())
    assert board["uid"].startswith("clickpulse-") and board["title"]
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 39
    assert board["time"] == {"from": "now-1h", "to": "now"}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        assert panel["datasource"] == DATASOURCE
        assert all(t["datasource"] == DATASOURCE for t in panel["targets"])
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, f"panel {panel['title']!r} overlaps another"
        cells |= mine
    names = {v["name"] for v in board["templating"]["list"]}
    if DASHBOARDS[name].request_variables:
        assert {"service", "endpoint", "region"} <= names
    # Every variable a panel uses is defined (macros are `$__...`, not variables).
    sql = "\n".join(t["rawSql"] for p in board["panels"] for t in p["targets"])
    used = set(re.findall(r"\$\{?([a-z_]+)", sql.replace("$__", "")))
    assert used <= names, used - names


def _query(reader: Client, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    result = reader.query(sql)
    return list(result.column_names), [tuple(row) for row in result.result_rows]


def _variables_for(panel: Panel, traffic: dict[str, Any], reader: Client) -> Variables:
    if "${trace_id" not in panel.sql:
        return Variables()
    trace = reader.query(
        "SELECT trace_id FROM analytics.request_metrics WHERE session_id = {s:String}"
        " AND endpoint = '/checkout' LIMIT 1",
        parameters={"s": traffic["session_id"]},
    ).result_rows[0][0]
    return Variables({"trace_id": trace})


@pytest.mark.parametrize(("dashboard", "panel"), PANELS, ids=[f"{d}:{p.title}" for d, p in PANELS])
def test_panel_query_has_the_shape_its_panel_needs(
    dashboard: str,
    panel: Panel,
    reader: Client,
    traffic: dict[str, Any],
    wait_for: Callable[..., Any],
) -> None:
    sql = expand(panel.sql, _range(), _variables_for(panel, traffic, reader))
    assert "$" not in sql.replace("${", "")

    def answered() -> tuple[list[str], list[tuple[Any, ...]]] | None:
        columns, rows = _query(reader, sql)
        # A time series has a row for every bucket of the range (WITH FILL), values or not.
        if panel.shape == "timeseries":
            rows = [r for r in rows if any(v is not None for v in r[1:])]
        return (columns, rows) if rows else None

    # Metrics arrive every few seconds; spans within a second or two.
    columns, rows = wait_for(answered, timeout=30) or _query(reader, sql)
    assert rows, f"{dashboard}: {panel.title} returned no rows with values:\n{sql}"
    if panel.shape == "timeseries":
        assert isinstance(rows[0][0], datetime), f"first column of {panel.title} is not the time"
        assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    if panel.shape == "value":
        assert len(rows) == 1 and len(columns) == 1
    if panel.value_range is not None:
        low, high = panel.value_range
        for row in rows:
            for value in row:
                if isinstance(value, int | float) and not isinstance(value, bool):
                    assert low <= value <= high, (panel.title, columns, row)
    if "${trace_id" in panel.sql:
        assert {r[1] for r in rows} == {"crud-api", "ecommerce-api"}


def test_wide_ranges_read_the_hourly_rollup(reader: Client, traffic: dict[str, Any]) -> None:
    panel = next(p for p in DASHBOARDS["business"].panels if p.title == "Revenue over time")
    week = TimeRange(datetime.now(UTC) - timedelta(days=7), datetime.now(UTC) + timedelta(hours=1))
    assert week.interval_s >= 1800
    sql = expand(panel.sql, week)
    _, hourly = _query(reader, sql)
    assert hourly and all(t.minute == 0 and t.second == 0 for t, _ in hourly)
    raw = reader.query(
        "SELECT sumIf(transaction_amount, status_code < 400) FROM analytics.request_metrics"
        " WHERE timestamp >= toStartOfHour({s:DateTime})",
        parameters={"s": week.start},
    ).result_rows[0][0]
    assert sum(v for _, v in hourly) == pytest.approx(raw)
    assert _tables_read(reader, sql) == {"analytics.request_metrics_1h"}


def _tables_read(reader: Client, sql: str) -> set[str]:
    """Tables whose parts the query plan reads; a UNION ALL side whose WHERE is a false
    constant keeps its ReadFromMergeTree step but selects no part."""
    plan = "\n".join(r[0] for r in reader.query("EXPLAIN PLAN indexes = 1 " + sql).result_rows)
    read = set()
    for step in plan.split("ReadFromMergeTree (")[1:]:
        table, details = step.split(")", 1)
        if re.search(r"Parts: [1-9]", details):
            read.add(table)
    return read


def test_distinct_counts_read_the_hourly_states_unless_an_endpoint_is_picked(
    reader: Client, traffic: dict[str, Any]
) -> None:
    panel = next(p for p in DASHBOARDS["business"].panels if p.title == "Active users")
    day = TimeRange(datetime.now(UTC) - timedelta(days=2), datetime.now(UTC) + timedelta(hours=1))
    assert day.interval_s >= 300
    exact = reader.query(
        "SELECT uniqExactIf(user_id, user_id != '') FROM analytics.request_metrics"
    ).result_rows[0][0]
    sql = expand(panel.sql, day)
    assert _query(reader, sql)[1][0][0] == pytest.approx(exact, rel=0.05)  # HyperLogLog
    assert _tables_read(reader, sql) == {"analytics.audience_1h"}
    checkout = expand(panel.sql, day, Variables({"endpoint": ["/checkout"]}))
    buyers = reader.query(
        "SELECT uniqExactIf(user_id, user_id != '') FROM analytics.request_metrics"
        " WHERE endpoint = '/checkout'"
    ).result_rows[0][0]
    assert _query(reader, checkout)[1] == [(buyers,)]
    assert _tables_read(reader, checkout) == {"analytics.request_metrics"}


def test_raw_panels_prune_by_time_through_the_timestamp_index(reader: Client) -> None:
    panel = next(p for p in DASHBOARDS["performance"].panels if p.title == "Slowest requests")
    plan = "\n".join(
        r[0] for r in reader.query("EXPLAIN indexes = 1 " + expand(panel.sql, _range())).result_rows
    )
    assert "idx_timestamp" in plan


def test_every_rollup_panel_has_a_raw_twin_for_the_benchmark(reader: Client) -> None:
    from clickpulse_bench.benchmarks import RAW_TWINS

    rollup_panels = {p.title for _, p in PANELS if p.uses_rollup}
    assert rollup_panels == set(RAW_TWINS)
    for title, sql in RAW_TWINS.items():
        assert _query(reader, expand(sql, _range()))[0], title


def test_failed_requests_show_with_their_trace(reader: Client, traffic: dict[str, Any]) -> None:
    panel = next(p for p in DASHBOARDS["performance"].panels if p.title.startswith("Latest server"))
    # Around the failed request (later tests, the alert rules' 5xx bursts, push it out of the
    # latest 20 of the last hour),
    (at,) = reader.query(
        "SELECT timestamp FROM analytics.request_metrics"
        " WHERE lower(trace_id) = lower({t:String}) LIMIT 1",
        parameters={"t": traffic["failed_trace_id"]},
    ).result_rows[0]
    around = TimeRange(
        at.replace(tzinfo=UTC) - timedelta(seconds=2), at.replace(tzinfo=UTC) + timedelta(seconds=2)
    )
    # and of crud-api: the alert rules' bursts come from services of their own.
    only_crud = Variables({"service": ["crud-api"]})
    columns, rows = _query(reader, expand(panel.sql, around, only_crud))
    assert columns[-1] == "trace_id" and rows
    assert traffic["failed_trace_id"].upper() in {str(r[-1]).upper() for r in rows}
    assert all(r[3] >= 500 for r in rows)


def test_variables_narrow_the_panels(reader: Client, traffic: dict[str, Any]) -> None:
    panel = DASHBOARDS["overview"].panels[0]
    only_crud = expand(panel.sql, _range(), Variables({"service": ["crud-api"]}))
    _, rows = _query(reader, only_crud)
    assert rows and {r[1] for r in rows} == {"crud-api"}
    for board in DASHBOARDS.values():
        for variable in board.to_json()["templating"]["list"]:
            if variable["type"] == "query":
                _, values = _query(reader, expand(variable["query"], _range()))
                assert values, variable["name"]


def test_revenue_equals_the_orders_in_postgresql(
    reader: Client, settings: Settings, traffic: dict[str, Any]
) -> None:
    import asyncpg  # type: ignore[import-untyped]

    async def orders_total() -> Decimal:
        dsn = settings.postgres_dsn.replace("postgresql+asyncpg", "postgresql")
        connection = await asyncpg.connect(dsn)
        try:
            total: Decimal = await connection.fetchval("SELECT coalesce(sum(total), 0) FROM orders")
        finally:
            await connection.close()
        return total

    revenue = next(p for p in DASHBOARDS["business"].panels if p.title == "Revenue")
    everything = TimeRange(
        datetime(2020, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(minutes=1)
    )
    (value,) = _query(reader, expand(revenue.sql, everything))[1][0]
    assert value == pytest.approx(float(asyncio.run(orders_total())), abs=0.01)


def test_most_viewed_products_are_named(reader: Client, traffic: dict[str, Any]) -> None:
    """By the name the product had when it was viewed (app.product.name), not "#17"."""
    panel = next(p for p in DASHBOARDS["business"].panels if p.title == "Most viewed products")
    start, end = reader.query(
        "SELECT min(timestamp), max(timestamp) FROM analytics.request_metrics"
        " WHERE session_id = {s:String}",
        parameters={"s": traffic["session_id"]},
    ).result_rows[0]
    around = TimeRange(
        start.replace(tzinfo=UTC) - timedelta(seconds=1),
        end.replace(tzinfo=UTC) + timedelta(seconds=2),
    )
    _, rows = _query(reader, expand(panel.sql, around, Variables({"region": ["eu-west"]})))
    # Viewed once by the session, once by the shop confirming the product for the cart.
    assert rows == [("Traffic Lamp", "home", 2)], rows


def _emit_past_requests(settings: Settings, service: str, starts: list[datetime]) -> None:
    """One 5 ms server request of `service` at each of `starts`, through the real collector."""
    from opentelemetry.trace import SpanKind

    provider = service_tracer_provider(settings, service)
    tracer = provider.get_tracer("clickpulse.tests")
    for start in starts:
        start_ns = int(start.timestamp() * 1e9)
        span = tracer.start_span(
            "GET /products",
            kind=SpanKind.SERVER,
            start_time=start_ns,
            attributes={
                "http.route": "/products",
                "http.request.method": "GET",
                "http.response.status_code": 200,
            },
        )
        span.end(end_time=start_ns + 5_000_000)
    provider.shutdown()


def test_minutes_without_requests_are_zero_traffic_and_no_latency(
    reader: Client, settings: Settings, unique_service: str, wait_for: Callable[..., Any]
) -> None:
    """A stack down for minutes: the traffic lines drop to 0 there and the latency lines
    break, where they used to run straight from the last minute before to the first after."""
    first = (datetime.now(UTC) - timedelta(days=2)).replace(second=10, microsecond=0)
    last = first + timedelta(minutes=5)
    _emit_past_requests(settings, unique_service, [first, last])
    minutes = TimeRange(first - timedelta(minutes=2), last + timedelta(minutes=3))
    assert minutes.interval_s <= 60
    only_this = Variables({"service": [unique_service]})
    panels = {p.title: p for board in DASHBOARDS.values() for p in board.panels}

    def rows_of(title: str) -> list[tuple[Any, ...]]:
        return _query(reader, expand(panels[title].sql, minutes, only_this))[1]

    assert wait_for(lambda: sum(r[2] for r in rows_of("Requests per second by service")) > 0.03)
    start = first.replace(second=0, tzinfo=None)
    every_minute = [start + timedelta(minutes=m) for m in range(-2, 9)]
    rps = rows_of("Requests per second by service")
    assert [r[0] for r in rps] == every_minute
    assert {r[1] for r in rps} == {unique_service}
    assert [round(r[2] * 60) for r in rps] == [0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0]
    latency = rows_of("Latency: average and p95")
    assert [r[0] for r in latency] == every_minute
    averages = [r[1] for r in latency]
    assert averages[2] == pytest.approx(5, abs=0.5) and averages[7] == pytest.approx(5, abs=0.5)
    assert averages[:2] + averages[3:7] + averages[8:] == [None] * 9
    assert all(r[2] is None for r in latency if r[1] is None)
    error_rate = rows_of("Error rate (5xx share)")
    assert [r[1] for r in error_rate] == [
        None,
        None,
        0,
        None,
        None,
        None,
        None,
        0,
        None,
        None,
        None,
    ]


def test_process_gauges_have_a_point_in_every_bucket_while_a_service_runs(
    reader: Client, traffic: dict[str, Any], wait_for: Callable[..., Any]
) -> None:
    """The services report every 5 s and the monitor every ~15 s: buckets of the dashboard's
    interval (1 s over 5 minutes) held a report one second and none the next, which Grafana
    draws as scattered dots. Every bucket between a service's first and last point has one."""
    panel = next(p for p in DASHBOARDS["performance"].panels if p.title == "CPU by service")
    services = ("crud-api", "ecommerce-api")

    def reported_by_service() -> dict[str, list[tuple[datetime, float | None]]]:
        now = datetime.now(UTC)
        _, rows = _query(reader, expand(panel.sql, TimeRange(now - timedelta(minutes=5), now)))
        by_service: dict[str, list[tuple[datetime, float | None]]] = {}
        for time, service, value in rows:
            by_service.setdefault(service, []).append((time, value))
        return by_service

    def reported(points: list[tuple[datetime, float | None]]) -> list[int]:
        return [i for i, (_, value) in enumerate(points) if value is not None]

    def three_buckets_of_each_service() -> dict[str, list[tuple[datetime, float | None]]] | None:
        found = reported_by_service()
        return found if all(len(reported(found.get(s, []))) >= 3 for s in services) else None

    # A stack started moments ago has reported into a bucket or two: wait for three.
    by_service = wait_for(three_buckets_of_each_service, timeout=120) or reported_by_service()
    assert set(services) <= set(by_service)
    for service, points in by_service.items():
        indices = reported(points)
        assert len(indices) >= (3 if service in services else 1), service
        inside = points[indices[0] : indices[-1] + 1]
        assert all(value is not None for _, value in inside), (service, inside)
        steps = {(b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(inside)}
        assert steps <= {30.0}, (service, steps)


# The tables the Pipeline dashboard reads, and the column each is cut by in time.
PIPELINE_SOURCES = {
    "otel.otel_metrics_sum": "TimeUnix",
    "otel.otel_metrics_gauge": "TimeUnix",
    "ops.clickhouse_samples": "ts",
    "analytics.request_metrics": "ingested_at",
}


def test_pipeline_series_break_where_nothing_was_reported(
    admin: Client, wait_for: Callable[..., Any]
) -> None:
    """A stack down for a minute: the Pipeline dashboard's lines (the collector's queue,
    ClickHouse's parts, PostgreSQL's sessions, ...) ran straight across it, as if the last value
    before had held. Over copies of its tables holding the stack's own last three minutes but
    the middle one, every series has every 30 s bucket, and the missing minute's two are NULL.
    (The ingest rate is 0 there instead: nothing was accepted.)"""

    def window() -> datetime:
        now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
        # Three minutes of 30 s buckets, the newest ended over 30 s ago (landed by now).
        return now - timedelta(seconds=now.second % 30 + 30 + 180)

    def reported_throughout() -> datetime | None:
        start = window()
        buckets = admin.query(
            """SELECT uniqExact(toStartOfInterval(TimeUnix, INTERVAL 30 second))
            FROM otel.otel_metrics_gauge
            WHERE TimeUnix >= {start:DateTime} AND TimeUnix < {start:DateTime} + 180
              AND ServiceName = 'clickpulse-monitor'""",
            parameters={"start": start},
        ).result_rows[0][0]
        return start if buckets == 6 else None

    # Right after `nox -s up` the stack has not reported for three minutes yet.
    start = wait_for(reported_throughout, timeout=240, every=5)
    assert start is not None, "the stack has not reported throughout the last 3 minutes"
    hole = (start + timedelta(seconds=60), start + timedelta(seconds=120))
    end = start + timedelta(seconds=180)
    scratch = f"pipeline_gap_{uuid.uuid4().hex[:8]}"
    admin.command(f"CREATE DATABASE {scratch}")
    try:
        for table, column in PIPELINE_SOURCES.items():
            copy = f"{scratch}.{table.split('.')[1]}"
            admin.command(f"CREATE TABLE {copy} AS {table}")
            admin.command(
                f"""INSERT INTO {copy} SELECT * FROM {table}
                WHERE {column} >= {{start:DateTime}} AND {column} < {{end:DateTime}}
                  AND NOT ({column} >= {{gap:DateTime}} AND {column} < {{back:DateTime}})""",
                parameters={"start": start, "end": end, "gap": hole[0], "back": hole[1]},
            )
        # Requests became queryable before and after the gap, whatever the traffic was.
        admin.command(
            f"""INSERT INTO {scratch}.request_metrics (timestamp, ingested_at, response_time_ms)
            VALUES ({{a:DateTime}} - 2, {{a:DateTime}}, 1),
                   ({{b:DateTime}} - 2, {{b:DateTime}}, 1)""",
            parameters={"a": start + timedelta(seconds=10), "b": hole[1] + timedelta(seconds=10)},
        )
        buckets = [start + timedelta(seconds=30 * i) for i in range(6)]
        in_gap = {buckets[2], buckets[3]}
        span = TimeRange(start.replace(tzinfo=UTC), end.replace(tzinfo=UTC))
        checked = 0
        for panel in DASHBOARDS["pipeline"].panels:
            if panel.shape != "timeseries" or panel.title == "Ingest rate by signal":
                continue
            sql = expand(panel.sql, span)
            for table in PIPELINE_SOURCES:
                sql = sql.replace(table, f"{scratch}.{table.split('.')[1]}")
            columns, rows = _query(admin, sql)
            series_key = 2 if columns[1] in ("signal", "table", "state") else 1
            by_series: dict[Any, list[tuple[datetime, tuple[Any, ...]]]] = {}
            for row in rows:
                by_series.setdefault(row[1:series_key], []).append((row[0], row[series_key:]))
            assert by_series, (panel.title, sql)
            for series, points in by_series.items():
                assert [t for t, _ in points] == buckets, (panel.title, series, points)
                gap = [values for t, values in points if t in in_gap]
                assert all(v is None for values in gap for v in values), (panel.title, series)
            around = [
                v
                for points in by_series.values()
                for t, values in points
                if t not in in_gap
                for v in values
            ]
            assert any(v is not None for v in around), (panel.title, rows)
            checked += 1
        assert checked == 10
    finally:
        admin.command(f"DROP DATABASE IF EXISTS {scratch}")
