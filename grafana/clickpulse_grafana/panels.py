"""Panels that recur: the rollup time series, the services' process gauges and the request
lists with their link to a trace."""

from __future__ import annotations

from clickpulse_grafana.panel_model import Column, Link, Panel
from clickpulse_grafana.sql_fragments import (
    FILTERS,
    RAW,
    REPORT_STEP,
    filled_per_series,
    rollup_over_time,
)


def rollup_series(
    title: str,
    columns: str,
    *,
    unit: str,
    value_range: tuple[float, float],
    by_service: bool = False,
    width: int = 12,
) -> Panel:
    """A time series of the rollups, one line per value column (and service)."""
    return Panel(
        title=title,
        type="timeseries",
        sql=rollup_over_time(columns, by_service=by_service),
        shape="timeseries",
        unit=unit,
        width=width,
        uses_rollup=True,
        value_range=value_range,
    )


def process_gauge(
    title: str, *, metric: str, aggregate: str, alias: str, unit: str, ceiling: float
) -> Panel:
    """A per-service time series of one of the services' process gauges (OTel metrics): each
    process's own value over the interval, summed over the service's processes (N workers,
    replicas), since a service with two processes uses the CPU and memory of both. A bucket
    without a report (the service was down) is NULL: a gap, not a line across it."""
    return Panel(
        title=title,
        type="timeseries",
        sql=filled_per_series(
            f"""    SELECT time, service, toNullable(sum(value)) AS {alias}
    FROM (
        SELECT toStartOfInterval(TimeUnix, INTERVAL {REPORT_STEP} second) AS time,
               ServiceName AS service, ResourceAttributes['service.instance.id'] AS instance,
               {aggregate}(Value) AS value
        FROM otel.otel_metrics_gauge
        WHERE $__timeFilter(TimeUnix) AND MetricName = '{metric}'
          AND $__conditionalAll(ServiceName IN (${{service:sqlstring}}), $service)
        GROUP BY time, service, instance
    )
    GROUP BY time, service""",
            "service",
            REPORT_STEP,
        ),
        shape="timeseries",
        unit=unit,
        value_range=(0 if unit == "percentunit" else 1, ceiling),
    )


# The jump keeps the time range and the service, endpoint and region picked: without them the
# link (a new URL of the same dashboard) resets every variable to its default, All.
TRACE_LINK = Link(
    title="Open this trace",
    url="/d/clickpulse-performance/performance?var-trace_id=${__data.fields.trace_id}"
    "&${__url_time_range}&${service:queryparam}&${endpoint:queryparam}&${region:queryparam}",
)


def request_list(title: str, condition: str, order_by: str) -> Panel:
    """20 requests of the raw table with a link to their trace on the trace id. The inner
    SELECT lists plain columns and the expressions stay outside: a top 20 then reads only the
    granules that can hold one of them (minmax indexes) and the other columns of 20 rows."""
    return Panel(
        title=title,
        type="table",
        sql=f"""
SELECT timestamp, service_name, concat(method, ' ', endpoint) AS route, status_code,
       round(response_time_ms, 2) AS response_time_ms, trace_id
FROM (
  SELECT timestamp, service_name, method, endpoint, status_code, response_time_ms, trace_id
  FROM {RAW}
  WHERE $__timeFilter(timestamp) AND {FILTERS}{condition}
  ORDER BY {order_by} LIMIT 20
) ORDER BY {order_by}""",
        shape="table",
        description="Click a trace id to see its spans below.",
        columns={
            "timestamp": Column(header="time"),
            "service_name": Column(header="service"),
            "status_code": Column(header="status"),
            "response_time_ms": Column(header="response time", unit="ms"),
            # No header: the link reads the cell as ${__data.fields.trace_id}.
            "trace_id": Column(link=TRACE_LINK),
        },
    )
