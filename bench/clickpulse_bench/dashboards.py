"""Section 3: dashboard query latency on generated `request_metrics` rows, every panel over a
week, a day and an hour, beside a raw-table twin of every rollup panel."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from clickpulse_grafana.dashboards import DASHBOARDS
from clickpulse_grafana.macros import TimeRange, Variables, expand

from clickpulse.stack.clickhouse_client import admin_client, reader_client
from clickpulse.stack.components import ClickHouse
from clickpulse.stack.settings import Settings
from clickpulse_bench.common import console, free_port

GENERATE_ROWS = """
INSERT INTO analytics.request_metrics (timestamp, service_name, endpoint, method, status_code,
    response_time_ms, request_size, response_size, user_id, session_id, client_ip, region,
    user_agent, product_id, product_category, transaction_amount, cart_items_count, order_id,
    run_id, trace_id, span_id)
SELECT
    now64(6) - toIntervalMicrosecond(rand64(1) % (7 * 86400 * 1000000)) AS timestamp,
    ['crud-api', 'ecommerce-api'][1 + (number % 5 = 0)] AS service_name,
    ['/products/{product_id}', '/products', '/users', '/cart', '/checkout', '/orders',
     '/users/{user_id}'][1 + rand(2) % 7] AS endpoint,
    if(endpoint IN ('/cart', '/checkout') AND rand(3) % 2 = 0, 'POST', 'GET') AS method,
    multiIf(rand(4) % 1000 < 5, 500, rand(4) % 1000 < 40, 404, endpoint = '/checkout', 201, 200)
        AS status_code,
    exp(randNormal(1.2, 0.8)) AS response_time_ms,
    if(method = 'POST', 40 + rand(5) % 200, 0) AS request_size,
    200 + rand(6) % 4000 AS response_size,
    toString(1 + rand(7) % 50000) AS user_id,
    toString(cityHash64(user_id, intDiv(toUnixTimestamp(timestamp), 1800))) AS session_id,
    IPv4NumToString(toUInt32(167772160 + rand(8) % 327680)) AS client_ip,
    ['us-east', 'us-west', 'eu-west', 'ap-south', 'sa-east'][1 + rand(9) % 5] AS region,
    'Mozilla/5.0 bench' AS user_agent,
    if(endpoint = '/products/{product_id}',
       toNullable(1 + toUInt64(pow(rand(10) % 1000, 2) / 1000)), NULL) AS product_id,
    if(product_id IS NULL, NULL, ['books', 'toys', 'home', 'sports'][1 + product_id % 4])
        AS product_category,
    if(endpoint = '/checkout' AND status_code < 400,
       toNullable(round(5 + rand(11) % 50000 / 100, 2)), NULL) AS transaction_amount,
    if(endpoint IN ('/cart', '/checkout'), toNullable(toUInt16(1 + rand(12) % 6)), NULL)
        AS cart_items_count,
    if(transaction_amount IS NULL, NULL, toNullable(number)) AS order_id,
    'bench' AS run_id,
    hex(randomString(16)) AS trace_id,
    hex(randomString(8)) AS span_id
FROM numbers({rows})
"""

RAW_TWINS = {
    "Requests per second by service": """
SELECT toStartOfInterval(timestamp, INTERVAL greatest($__interval_s, 60) second) AS time,
       service_name, count() / greatest($__interval_s, 60) AS rps
FROM analytics.request_metrics WHERE $__timeFilter(timestamp)
GROUP BY time, service_name ORDER BY time""",
    "Latency: average and p95": """
SELECT toStartOfInterval(timestamp, INTERVAL greatest($__interval_s, 60) second) AS time,
       avg(response_time_ms) AS avg_ms, quantile(0.95)(response_time_ms) AS p95_ms
FROM analytics.request_metrics WHERE $__timeFilter(timestamp)
GROUP BY time ORDER BY time""",
    "Revenue over time": """
SELECT toStartOfInterval(timestamp, INTERVAL greatest($__interval_s, 60) second) AS time,
       sum(transaction_amount) AS revenue
FROM analytics.request_metrics WHERE $__timeFilter(timestamp) AND status_code < 400
GROUP BY time ORDER BY time""",
    "Active users": """
SELECT uniq(user_id) FROM analytics.request_metrics
WHERE $__timeFilter(timestamp) AND user_id != ''""",
    "Active users over time": """
SELECT toStartOfInterval(timestamp, INTERVAL greatest($__interval_s, 60) second) AS time,
       uniq(user_id) AS users
FROM analytics.request_metrics WHERE $__timeFilter(timestamp) AND user_id != ''
GROUP BY time ORDER BY time""",
    "Refused requests per second": """
SELECT toStartOfInterval(timestamp, INTERVAL greatest($__interval_s, 60) second) AS time,
       countIf(status_code = 401) / greatest($__interval_s, 60) AS unauthorized,
       countIf(status_code = 403) / greatest($__interval_s, 60) AS forbidden,
       countIf(status_code = 429) / greatest($__interval_s, 60) AS rate_limited,
       countIf(status_code = 503) / greatest($__interval_s, 60) AS shed
FROM analytics.request_metrics WHERE $__timeFilter(timestamp)
GROUP BY time ORDER BY time""",
    "Status codes": """
SELECT toString(status_code) AS status, count() AS requests FROM analytics.request_metrics
WHERE $__timeFilter(timestamp) GROUP BY status ORDER BY requests DESC""",
    "Top 10 endpoints": """
SELECT concat(method, ' ', endpoint) AS route, count() AS requests
FROM analytics.request_metrics WHERE $__timeFilter(timestamp) AND endpoint != ''
GROUP BY route ORDER BY requests DESC LIMIT 10""",
    "Active users by region": """
SELECT region, uniq(user_id) AS users FROM analytics.request_metrics
WHERE $__timeFilter(timestamp) AND user_id != '' GROUP BY region ORDER BY users DESC""",
    "Response time per endpoint": """
SELECT concat(method, ' ', endpoint) AS route, count() AS request_count,
       avg(response_time_ms) AS avg_ms,
       quantiles(0.5, 0.95, 0.99)(response_time_ms) AS latency_quantiles_ms
FROM analytics.request_metrics WHERE $__timeFilter(timestamp) AND endpoint != ''
GROUP BY route ORDER BY latency_quantiles_ms[2] DESC""",
    "Throughput by service": """
SELECT toStartOfInterval(timestamp, INTERVAL greatest($__interval_s, 60) second) AS time,
       service_name, count() AS requests
FROM analytics.request_metrics WHERE $__timeFilter(timestamp)
GROUP BY time, service_name ORDER BY time""",
    "Error rate (5xx share)": """
SELECT toStartOfInterval(timestamp, INTERVAL greatest($__interval_s, 60) second) AS time,
       countIf(status_code >= 500) / count() AS error_rate
FROM analytics.request_metrics WHERE $__timeFilter(timestamp) GROUP BY time ORDER BY time""",
    "Errors per minute": """
SELECT toStartOfInterval(timestamp, INTERVAL greatest($__interval_s, 60) second) AS time,
       countIf(status_code >= 500) * 60 / greatest($__interval_s, 60) AS server_errors,
       countIf(status_code >= 400 AND status_code < 500) * 60 / greatest($__interval_s, 60)
           AS client_errors
FROM analytics.request_metrics WHERE $__timeFilter(timestamp) GROUP BY time ORDER BY time""",
    "Errors by endpoint": """
SELECT concat(method, ' ', endpoint) AS route, status_code, count() AS requests
FROM analytics.request_metrics WHERE $__timeFilter(timestamp) AND status_code >= 400
GROUP BY route, status_code ORDER BY requests DESC LIMIT 50""",
    "Revenue": """
SELECT sumIf(transaction_amount, status_code < 400) AS revenue FROM analytics.request_metrics
WHERE $__timeFilter(timestamp)""",
    "Orders": """
SELECT countIf(order_id IS NOT NULL AND transaction_amount IS NOT NULL AND status_code < 400)
FROM analytics.request_metrics WHERE $__timeFilter(timestamp)""",
    "Checkout conversion": """
SELECT uniqIf(session_id, endpoint = '/checkout' AND status_code < 400)
       / greatest(uniqIf(session_id, method = 'POST' AND endpoint = '/cart'
                         AND status_code < 400), 1) AS conversion
FROM analytics.request_metrics WHERE $__timeFilter(timestamp) AND session_id != ''""",
    "Funnel: sessions that viewed, added to cart, checked out": """
SELECT uniqIf(session_id, endpoint = '/products/{product_id}'),
       uniqIf(session_id, method = 'POST' AND endpoint = '/cart' AND status_code < 400),
       uniqIf(session_id, endpoint = '/checkout' AND status_code < 400)
FROM analytics.request_metrics WHERE $__timeFilter(timestamp) AND session_id != ''""",
}


def _timed(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, round(0.95 * len(samples)) - 1)]


def bench_dashboards(rows: int, repeat: int) -> tuple[dict[str, Any], list[list[str]]]:
    """On a throw-away ClickHouse (own state folder and ports), so the stack's data is untouched."""
    with tempfile.TemporaryDirectory(prefix="clickpulse-bench-") as tmp:
        saved = dict(os.environ)
        os.environ.update(
            CLICKPULSE_STATE_DIR=tmp,
            CLICKPULSE_CH_HTTP_PORT=str(free_port()),
            CLICKPULSE_CH_NATIVE_PORT=str(free_port()),
        )
        settings = Settings.from_env()
        clickhouse = ClickHouse(settings)
        try:
            clickhouse.process.start()
            clickhouse.after_start()
            admin = admin_client(settings)
            started = time.monotonic()
            for offset in range(0, rows, 2_000_000):
                admin.command(
                    GENERATE_ROWS.replace("{rows}", str(min(2_000_000, rows - offset))),
                    settings={"max_insert_threads": 2},
                )
            load_s = time.monotonic() - started
            # What background merges reach after a while; the raw table is left as loaded.
            for rollup in ("request_metrics_1m", "request_metrics_1h", "audience_1h"):
                admin.command(f"OPTIMIZE TABLE analytics.{rollup} FINAL")
            reader = reader_client(settings)
            now = datetime.now(UTC)
            week = TimeRange(now - timedelta(days=7), now)
            # The other ranges people look at: a day (hourly distinct-count states, minute
            # rollup) and an hour (raw rows for distinct counts).
            others = [
                TimeRange(now - timedelta(days=1), now),
                TimeRange(now - timedelta(hours=1), now),
            ]
            table: list[list[str]] = []
            worst = 0.0
            for board in DASHBOARDS.values():
                for panel in board.panels:
                    variables = (
                        Variables({"trace_id": "00"}) if "${trace_id" in panel.sql else Variables()
                    )
                    sql = expand(panel.sql, week, variables)
                    p50, p95 = _timed(partial(reader.query, sql), repeat)
                    worst = max(worst, p95)
                    ratio = ""
                    if panel.title in RAW_TWINS:
                        raw_sql = expand(RAW_TWINS[panel.title], week)
                        _, raw_p95 = _timed(partial(reader.query, raw_sql), repeat)
                        ratio = f"{raw_p95 / p95:.1f}x faster than raw ({raw_p95:.0f} ms)"
                    narrower = [
                        _timed(partial(reader.query, expand(panel.sql, r, variables)), repeat)[1]
                        for r in others
                    ]
                    worst = max(worst, *narrower)
                    table.append(
                        [board.title, panel.title, f"{p50:.1f}", f"{p95:.1f}"]
                        + [f"{p:.1f}" for p in narrower]
                        + [ratio]
                    )
                    console.print(
                        f"  {board.title}: {panel.title}: p50 {p50:.1f} ms, p95 {p95:.1f} ms"
                        f" (day {narrower[0]:.1f}, hour {narrower[1]:.1f}) {ratio}"
                    )
        finally:
            clickhouse.process.stop()
            os.environ.clear()
            os.environ.update(saved)
    return {
        "rows": rows,
        "load seconds": round(load_s, 1),
        "rows/s loaded": round(rows / load_s),
        "worst panel p95 ms": round(worst, 1),
    }, table


def section(settings: Settings, quick: bool, note: str) -> str:
    summary, panels = bench_dashboards(1_000_000 if quick else 10_000_000, 5 if quick else 20)
    return (
        f"## 3. Dashboard queries\n\n{summary['rows']:,} generated `request_metrics` rows"
        " over 7 days "
        f"(loaded with `INSERT ... SELECT FROM numbers()` in {summary['load seconds']} s,"
        f" {summary['rows/s loaded']:,} rows/s; the rollups fill through their views),"
        " every panel over the 7 days (and the last day, the last hour), macros expanded, run"
        " as the analyst, 20 times each. Worst p95 over all panels and ranges:"
        f" {summary['worst panel p95 ms']} ms.\n\n"
        "| dashboard | panel | p50 ms | p95 ms | p95 ms, 1 day | p95 ms, 1 hour"
        " | rollup vs raw (7 days) |\n|---|---|---|---|---|---|---|\n"
        + "\n".join("| " + " | ".join(row) + " |" for row in panels)
        + note
    )
