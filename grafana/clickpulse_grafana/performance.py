"""The Performance dashboard: latency per endpoint, throughput, errors, CPU and memory, and
the drill-down from a slow or failed request to its trace."""

from __future__ import annotations

from clickpulse_grafana.panel_model import Column, Dashboard, Panel, Thresholds
from clickpulse_grafana.panels import process_gauge, request_list, rollup_series
from clickpulse_grafana.sql_fragments import FILTERS, P50, P95, P99, ROLLUP, STEP

# Latency colours: yellow from 100 ms, red from 500 ms.
LATENCY: Thresholds = ((None, "green"), (100, "yellow"), (500, "red"))


def _latency(header: str) -> Column:
    return Column(header=header, unit="ms", thresholds=LATENCY, coloured=True)


PERFORMANCE = Dashboard(
    uid="clickpulse-performance",
    title="Performance",
    description="Latency per endpoint, throughput, errors, CPU and memory, and trace drill-down.",
    panels=[
        Panel(
            title="Response time per endpoint",
            type="table",
            sql=f"""
SELECT concat(method, ' ', endpoint) AS route,
       sum(requests) AS request_count,
       round(sum(latency_sum_ms) / request_count, 2) AS avg_ms,
       round({P50}, 2) AS p50_ms,
       round({P95}, 2) AS p95_ms,
       round({P99}, 2) AS p99_ms
FROM {ROLLUP}
WHERE {FILTERS} AND endpoint != ''
GROUP BY route ORDER BY p95_ms DESC""",
            shape="table",
            width=24,
            uses_rollup=True,
            columns={
                "request_count": Column(header="requests", unit="none"),
                "avg_ms": _latency("avg"),
                "p50_ms": _latency("p50"),
                "p95_ms": _latency("p95"),
                "p99_ms": _latency("p99"),
            },
        ),
        rollup_series(
            "Throughput by service",
            "sum(requests) AS requests",
            by_service=True,
            unit="short",
            value_range=(0, 1e9),
        ),
        rollup_series(
            "Error rate (5xx share)",
            # Nullable: a minute without requests has no error rate (a gap, not 0 %).
            "sum(server_errors) / nullIf(sum(requests), 0) AS error_rate",
            unit="percentunit",
            value_range=(0, 1),
        ),
        rollup_series(
            "Errors per minute",
            f"sum(server_errors) * 60 / {STEP} AS server_errors, "
            f"sum(client_errors) * 60 / {STEP} AS client_errors",
            unit="short",
            value_range=(0, 1e9),
        ),
        process_gauge(
            "CPU by service",
            metric="process.cpu.utilization",
            aggregate="avg",
            alias="cpu",
            unit="percentunit",
            ceiling=64,
        ),
        process_gauge(
            "Memory by service",
            metric="process.memory.usage",
            aggregate="max",
            alias="rss",
            unit="bytes",
            ceiling=1e12,
        ),
        Panel(
            title="Errors by endpoint",
            type="table",
            sql=f"""
SELECT concat(method, ' ', endpoint) AS route, status_code, sum(requests) AS requests
FROM {ROLLUP}
WHERE {FILTERS} AND status_code >= 400
GROUP BY route, status_code ORDER BY requests DESC LIMIT 50""",
            shape="table",
            uses_rollup=True,
            columns={"status_code": Column(header="status")},
        ),
        request_list("Slowest requests", "", "response_time_ms DESC"),
        request_list("Latest server errors (5xx)", " AND status_code >= 500", "timestamp DESC"),
        Panel(
            title="Trace spans (pick a trace above)",
            type="table",
            sql="""
WITH (SELECT (min(Start), max(End)) FROM otel.otel_traces_trace_id_ts
      WHERE TraceId = ${trace_id:sqlstring}) AS bounds
SELECT Timestamp, ServiceName, SpanName, SpanKind, round(Duration / 1e6, 3) AS duration_ms,
       StatusCode, SpanId, ParentSpanId
FROM otel.otel_traces
WHERE TraceId = ${trace_id:sqlstring}
  AND Timestamp >= bounds.1 AND Timestamp <= bounds.2 + INTERVAL 1 SECOND
ORDER BY Timestamp""",
            shape="table",
            width=24,
            description="Looked up through the trace-id table, so only that trace's days are read.",
            columns={"duration_ms": Column(header="duration", unit="ms")},
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
