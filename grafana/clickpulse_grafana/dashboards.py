"""The three dashboards (Overview, Performance, Business) as code. `python -m
clickpulse_grafana build` writes grafana/dashboards/*.json; a test checks the committed JSON is
exactly what this module generates. Panels over time read the rollups: per minute, or per hour
when the range is wide (Grafana's interval >= 30 min, i.e. ranges of about a week or more);
distinct users and sessions read hourly HyperLogLog states from a day on. Every panel answers a
week of 10M requests within 150 ms (docs/benchmarks.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

DASHBOARDS_DIR = Path(__file__).resolve().parent.parent / "dashboards"
DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "clickpulse-clickhouse"}
SCHEMA_VERSION = 41
MAX_DATA_POINTS = 300

PanelType = Literal["timeseries", "table", "stat", "piechart", "barchart", "bargauge"]
Shape = Literal["timeseries", "table", "value"]

SERVICE = "$__conditionalAll(service_name IN (${service:sqlstring}), $service)"
ENDPOINT = "$__conditionalAll(endpoint IN (${endpoint:sqlstring}), $endpoint)"
REGION = "$__conditionalAll(region IN (${region:sqlstring}), $region)"
FILTERS = f"{SERVICE} AND {ENDPOINT} AND {REGION}"
# Distinct counts on raw rows use `uniq` (exact up to tens of thousands, then an estimate
# within ~2%): `uniqExact` costs 10x more on a week of raw rows.
# Both rollups have the same columns; the WHERE of each side is a constant once the macros are
# expanded, so ClickHouse reads only one of them. Buckets are never finer than the rollup's.
WIDE = "$__interval_s >= 1800"
STEP = f"if({WIDE}, greatest($__interval_s, 3600), greatest($__interval_s, 60))"
BUCKET = f"toStartOfInterval(ts, INTERVAL {STEP} second)"
ROLLUP = (
    "(SELECT * FROM analytics.request_metrics_1h WHERE " + WIDE + " AND $__timeFilter(ts)"
    " UNION ALL SELECT * FROM analytics.request_metrics_1m WHERE NOT "
    + WIDE
    + " AND $__timeFilter(ts))"
)
MINUTES = "analytics.request_metrics_1m"
RAW = "analytics.request_metrics"
# Latency quantiles from the rollups' log-bucket histograms (clickhouse/migrations/0007).
P50, P95, P99 = (
    f"clickpulse_latency_quantile(sumMap(latency_histogram), {level})"
    for level in ("0.5", "0.95", "0.99")
)
# Distinct users and sessions: from the hourly HyperLogLog states once a range spans a day or
# more, from the raw rows below that or when an endpoint is picked (the states have no endpoint).
# `$__conditionalAll(0, $endpoint)` is 1=1 for "All" and 0 otherwise: both WHEREs stay constants.
AUDIENCE_WIDE = "$__interval_s >= 300 AND $__conditionalAll(0, $endpoint)"
HLL = "uniqCombinedMerge(12)"
AUDIENCE_HOURLY = (
    f"analytics.audience_1h WHERE {AUDIENCE_WIDE} AND $__timeFilter(ts) AND {SERVICE} AND {REGION}"
)
AUDIENCE_RAW = f"{RAW} WHERE NOT ({AUDIENCE_WIDE}) AND $__timeFilter(timestamp) AND {FILTERS}"
VIEWED = "endpoint = '/products/{product_id}'"
ADDED_TO_CART = "method = 'POST' AND endpoint = '/cart' AND status_code < 400"
CHECKED_OUT = "endpoint = '/checkout' AND status_code < 400"
FUNNEL = f"""
  SELECT {HLL}(sessions_viewed_product) AS viewed, {HLL}(sessions_added_to_cart) AS carted,
         {HLL}(sessions_checked_out) AS checked_out
  FROM {AUDIENCE_HOURLY}
  UNION ALL
  SELECT uniqIf(session_id, {VIEWED}), uniqIf(session_id, {ADDED_TO_CART}),
         uniqIf(session_id, {CHECKED_OUT})
  FROM {AUDIENCE_RAW} AND session_id != ''"""


@dataclass(frozen=True)
class Panel:
    title: str
    type: PanelType
    sql: str
    shape: Shape
    width: int = 12
    height: int = 8
    unit: str | None = None
    description: str = ""
    thresholds: list[tuple[float | None, str]] = field(default_factory=list)
    links: list[dict[str, str]] = field(default_factory=list)
    uses_rollup: bool = False
    # Bounds every numeric value of the result must respect (checked by the tests).
    value_range: tuple[float, float] | None = None

    def to_json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        defaults: dict[str, Any] = {"custom": {}}
        if self.unit:
            defaults["unit"] = self.unit
        if self.thresholds:
            defaults["thresholds"] = {
                "mode": "absolute",
                "steps": [{"color": color, "value": value} for value, color in self.thresholds],
            }
            if self.type == "table":
                defaults["custom"]["cellOptions"] = {"type": "color-background"}
        if self.links:
            defaults["links"] = self.links
        return {
            "id": panel_id,
            "type": self.type,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            # Fixed, so $__interval (which picks the rollup) depends on the range only, not on
            # the panel's width in pixels; the macro expander assumes the same.
            "maxDataPoints": MAX_DATA_POINTS,
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}
            },
            "targets": [
                {
                    "refId": "A",
                    "datasource": DATASOURCE,
                    "editorType": "sql",
                    "format": 0 if self.shape == "timeseries" else 1,
                    "queryType": "timeseries" if self.shape == "timeseries" else "table",
                    "rawSql": self.sql.strip(),
                }
            ],
        }


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel]
    extra_variables: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        panels, x, y, row_height = [], 0, 0, 0
        for index, panel in enumerate(self.panels, start=1):
            if x + panel.width > 24:
                x, y, row_height = 0, y + row_height, 0
            panels.append(panel.to_json(index, x, y))
            x += panel.width
            row_height = max(row_height, panel.height)
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["clickpulse"],
            "timezone": "browser",
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "refresh": "10s",
            "time": {"from": "now-1h", "to": "now"},
            "timepicker": {},
            "fiscalYearStartMonth": 0,
            "links": [],
            "annotations": {"list": []},
            "templating": {"list": [*variables(), *self.extra_variables]},
            "panels": panels,
        }


def _query_variable(name: str, label: str, sql: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": sql,
        "definition": sql,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "sort": 1,
        "hide": 0,
    }


def variables() -> list[dict[str, Any]]:
    return [
        _query_variable(
            "service",
            "Service",
            f"SELECT DISTINCT service_name FROM {MINUTES} WHERE $__timeFilter(ts)",
        ),
        _query_variable(
            "endpoint",
            "Endpoint",
            f"SELECT DISTINCT endpoint FROM {MINUTES} WHERE $__timeFilter(ts) AND {SERVICE}"
            " AND endpoint != ''",
        ),
        _query_variable(
            "region", "Region", f"SELECT DISTINCT region FROM {MINUTES} WHERE $__timeFilter(ts)"
        ),
    ]


def _process_gauge(
    title: str, metric: str, aggregate: str, alias: str, unit: str, ceiling: float
) -> Panel:
    """A per-service time series of one of the services' process gauges (OTel metrics): each
    process's own value over the interval, summed over the service's processes (N workers,
    replicas), since a service with two processes uses the CPU and memory of both."""
    return Panel(
        title,
        "timeseries",
        f"""
SELECT time, service, sum(value) AS {alias}
FROM (
    SELECT $__timeInterval(TimeUnix) AS time, ServiceName AS service,
           ResourceAttributes['service.instance.id'] AS instance, {aggregate}(Value) AS value
    FROM otel.otel_metrics_gauge
    WHERE $__timeFilter(TimeUnix) AND MetricName = '{metric}'
      AND $__conditionalAll(ServiceName IN (${{service:sqlstring}}), $service)
    GROUP BY time, service, instance
)
GROUP BY time, service ORDER BY time""",
        "timeseries",
        unit=unit,
        value_range=(0 if unit == "percentunit" else 1, ceiling),
    )


TRACE_LINK = [
    {
        "title": "Open this trace",
        "url": "/d/clickpulse-performance/performance"
        "?var-trace_id=${__data.fields.trace_id}&${__url_time_range}",
    }
]


def _request_list(title: str, condition: str, order_by: str) -> Panel:
    """20 requests of the raw table with a link to their trace. The inner SELECT lists plain
    columns and the expressions stay outside: a top 20 then reads only the granules that can
    hold one of them (minmax indexes) and the other columns of 20 rows."""
    return Panel(
        title,
        "table",
        f"""
SELECT timestamp, service_name, concat(method, ' ', endpoint) AS route, status_code,
       round(response_time_ms, 2) AS response_time_ms, trace_id
FROM (
  SELECT timestamp, service_name, method, endpoint, status_code, response_time_ms, trace_id
  FROM {RAW}
  WHERE $__timeFilter(timestamp) AND {FILTERS}{condition}
  ORDER BY {order_by} LIMIT 20
) ORDER BY {order_by}""",
        "table",
        description="Click a trace id to see its spans below.",
        links=TRACE_LINK,
    )


OVERVIEW = Dashboard(
    uid="clickpulse-overview",
    title="Overview",
    description="Traffic, latency, status codes, busiest endpoints and users by region.",
    panels=[
        Panel(
            "Requests per second by service",
            "timeseries",
            f"""
SELECT {BUCKET} AS time, service_name, sum(requests) / {STEP} AS rps
FROM {ROLLUP}
WHERE {FILTERS}
GROUP BY time, service_name ORDER BY time""",
            "timeseries",
            unit="reqps",
            uses_rollup=True,
            value_range=(0, 1e6),
        ),
        Panel(
            "Latency: average and p95",
            "timeseries",
            f"""
SELECT {BUCKET} AS time,
       sum(latency_sum_ms) / sum(requests) AS avg_ms,
       {P95} AS p95_ms
FROM {ROLLUP}
WHERE {FILTERS}
GROUP BY time ORDER BY time""",
            "timeseries",
            unit="ms",
            uses_rollup=True,
            value_range=(0, 600_000),
        ),
        Panel(
            "Status codes",
            "piechart",
            f"""
SELECT toString(status_code) AS status, sum(requests) AS requests
FROM {ROLLUP}
WHERE {FILTERS}
GROUP BY status ORDER BY requests DESC""",
            "table",
            width=8,
            uses_rollup=True,
        ),
        Panel(
            "Top 10 endpoints",
            "bargauge",
            f"""
SELECT concat(method, ' ', endpoint) AS route, sum(requests) AS requests
FROM {ROLLUP}
WHERE {FILTERS} AND endpoint != ''
GROUP BY route ORDER BY requests DESC LIMIT 10""",
            "table",
            width=8,
            uses_rollup=True,
        ),
        Panel(
            "Active users by region",
            "barchart",
            f"""
SELECT region, sum(users) AS users FROM (
  SELECT region, {HLL}(users) AS users FROM {AUDIENCE_HOURLY} GROUP BY region
  UNION ALL
  SELECT region, uniqIf(user_id, user_id != '') FROM {AUDIENCE_RAW} GROUP BY region
) GROUP BY region ORDER BY users DESC""",
            "table",
            width=8,
            uses_rollup=True,
        ),
    ],
)

PERFORMANCE = Dashboard(
    uid="clickpulse-performance",
    title="Performance",
    description="Latency per endpoint, throughput, errors, CPU and memory, and trace drill-down.",
    panels=[
        Panel(
            "Response time per endpoint",
            "table",
            f"""
SELECT concat(method, ' ', endpoint) AS route,
       sum(requests) AS request_count,
       round(sum(latency_sum_ms) / request_count, 2) AS avg_ms,
       round({P50}, 2) AS p50_ms,
       round({P95}, 2) AS p95_ms,
       round({P99}, 2) AS p99_ms
FROM {ROLLUP}
WHERE {FILTERS} AND endpoint != ''
GROUP BY route ORDER BY p95_ms DESC""",
            "table",
            width=24,
            unit="ms",
            uses_rollup=True,
            thresholds=[(None, "green"), (100, "yellow"), (500, "red")],
        ),
        Panel(
            "Throughput by service",
            "timeseries",
            f"""
SELECT {BUCKET} AS time, service_name, sum(requests) AS requests
FROM {ROLLUP}
WHERE {FILTERS}
GROUP BY time, service_name ORDER BY time""",
            "timeseries",
            unit="short",
            uses_rollup=True,
            value_range=(0, 1e9),
        ),
        Panel(
            "Error rate (5xx share)",
            "timeseries",
            f"""
SELECT {BUCKET} AS time, sum(server_errors) / sum(requests) AS error_rate
FROM {ROLLUP}
WHERE {FILTERS}
GROUP BY time ORDER BY time""",
            "timeseries",
            unit="percentunit",
            uses_rollup=True,
            value_range=(0, 1),
        ),
        Panel(
            "Errors per minute",
            "timeseries",
            f"""
SELECT {BUCKET} AS time,
       sum(server_errors) * 60 / {STEP} AS server_errors,
       sum(client_errors) * 60 / {STEP} AS client_errors
FROM {ROLLUP}
WHERE {FILTERS}
GROUP BY time ORDER BY time""",
            "timeseries",
            unit="short",
            uses_rollup=True,
            value_range=(0, 1e9),
        ),
        _process_gauge(
            "CPU by service", "process.cpu.utilization", "avg", "cpu", "percentunit", 64
        ),
        _process_gauge("Memory by service", "process.memory.usage", "max", "rss", "bytes", 1e12),
        Panel(
            "Errors by endpoint",
            "table",
            f"""
SELECT concat(method, ' ', endpoint) AS route, status_code, sum(requests) AS requests
FROM {ROLLUP}
WHERE {FILTERS} AND status_code >= 400
GROUP BY route, status_code ORDER BY requests DESC LIMIT 50""",
            "table",
            uses_rollup=True,
        ),
        _request_list("Slowest requests", "", "response_time_ms DESC"),
        _request_list("Latest server errors (5xx)", " AND status_code >= 500", "timestamp DESC"),
        Panel(
            "Trace spans (pick a trace above)",
            "table",
            """
WITH (SELECT (min(Start), max(End)) FROM otel.otel_traces_trace_id_ts
      WHERE TraceId = ${trace_id:sqlstring}) AS bounds
SELECT Timestamp, ServiceName, SpanName, SpanKind, round(Duration / 1e6, 3) AS duration_ms,
       StatusCode, SpanId, ParentSpanId
FROM otel.otel_traces
WHERE TraceId = ${trace_id:sqlstring}
  AND Timestamp >= bounds.1 AND Timestamp <= bounds.2 + INTERVAL 1 SECOND
ORDER BY Timestamp""",
            "table",
            width=24,
            description="Looked up through the trace-id table, so only that trace's days are read.",
        ),
    ],
    extra_variables=[
        {
            "name": "trace_id",
            "label": "Trace id",
            "type": "textbox",
            "query": "",
            "current": {"text": "", "value": ""},
            "hide": 0,
        }
    ],
)

BUSINESS = Dashboard(
    uid="clickpulse-business",
    title="Business",
    description="Revenue, active users, most viewed products and the checkout funnel.",
    panels=[
        Panel(
            "Revenue",
            "stat",
            f"""
SELECT sum(revenue) AS revenue
FROM {ROLLUP}
WHERE {FILTERS}""",
            "value",
            width=6,
            height=6,
            unit="currencyUSD",
            uses_rollup=True,
            value_range=(0, 1e12),
        ),
        Panel(
            "Active users",
            "stat",
            f"""
SELECT sum(users) AS users FROM (
  SELECT {HLL}(users) AS users FROM {AUDIENCE_HOURLY}
  UNION ALL
  SELECT uniqIf(user_id, user_id != '') FROM {AUDIENCE_RAW}
)""",
            "value",
            width=6,
            height=6,
            value_range=(0, 1e9),
            uses_rollup=True,
        ),
        Panel(
            "Orders",
            "stat",
            f"""
SELECT sum(orders) AS orders
FROM {ROLLUP}
WHERE {FILTERS}""",
            "value",
            width=6,
            height=6,
            uses_rollup=True,
            value_range=(0, 1e9),
        ),
        Panel(
            "Checkout conversion",
            "stat",
            f"""
SELECT least(sum(checked_out) / greatest(sum(carted), 1), 1) AS conversion
FROM ({FUNNEL}
)""",
            "value",
            width=6,
            height=6,
            unit="percentunit",
            value_range=(0, 1),
            uses_rollup=True,
        ),
        Panel(
            "Revenue over time",
            "timeseries",
            f"""
SELECT {BUCKET} AS time, sum(revenue) AS revenue
FROM {ROLLUP}
WHERE {FILTERS}
GROUP BY time ORDER BY time""",
            "timeseries",
            unit="currencyUSD",
            uses_rollup=True,
            value_range=(0, 1e12),
        ),
        Panel(
            "Active users over time",
            "timeseries",
            f"""
SELECT time, sum(users) AS users FROM (
  SELECT toStartOfInterval(ts, INTERVAL greatest($__interval_s, 3600) second) AS time,
         {HLL}(users) AS users
  FROM {AUDIENCE_HOURLY} GROUP BY time
  UNION ALL
  SELECT toStartOfInterval(timestamp, INTERVAL greatest($__interval_s, 60) second) AS time,
         uniqIf(user_id, user_id != '')
  FROM {AUDIENCE_RAW} GROUP BY time
) GROUP BY time ORDER BY time""",
            "timeseries",
            unit="short",
            uses_rollup=True,
            value_range=(0, 1e9),
        ),
        Panel(
            "Most viewed products",
            "table",
            f"""
SELECT concat('#', toString(product_id)) AS product, category, views FROM (
  SELECT product_id, any(product_category) AS category, count() AS views
  FROM {RAW}
  WHERE $__timeFilter(timestamp) AND {FILTERS}
    AND method = 'GET' AND endpoint = '/products/{{product_id}}' AND status_code = 200
  GROUP BY product_id ORDER BY views DESC LIMIT 10
) ORDER BY views DESC""",
            "table",
        ),
        Panel(
            "Funnel: sessions that viewed, added to cart, checked out",
            "bargauge",
            f"""
SELECT stage, sum(sessions) AS sessions FROM ({FUNNEL}
) ARRAY JOIN ['1 viewed a product', '2 added to cart', '3 checked out'] AS stage,
             [viewed, carted, checked_out] AS sessions
GROUP BY stage ORDER BY stage""",
            "table",
            uses_rollup=True,
        ),
    ],
)

DASHBOARDS = {"overview": OVERVIEW, "performance": PERFORMANCE, "business": BUSINESS}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name].to_json(), indent=2, sort_keys=True) + "\n"


def build(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in DASHBOARDS:
        path = directory / f"{name}.json"
        path.write_text(render(name))
        written.append(path)
    return written
