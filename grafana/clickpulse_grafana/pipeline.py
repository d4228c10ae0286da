"""The Pipeline dashboard: the stack watching itself. The collector's own metrics (what it
accepted, refused, failed to send, and what waits in its queue), how late requests become
queryable, ClickHouse's health samples (parts, inserts and merges, insert latency, disk),
PostgreSQL's sessions and transactions from the monitor, and the alert rules' states.

The collector reports every 10 s, ClickHouse samples itself and the monitor samples PostgreSQL
every 15 s: buckets are never finer than 30 s, or one bucket would hold a report and the next
none. Every bucket of the range is there (WITH FILL), and one nothing reported into (the stack
was down) holds NULL: the line breaks there, where it used to run straight across the downtime
as if the last value before had held. Counters of ClickHouse (system.events) are totals since
it started: a rate is the difference between consecutive samples, a drop being a restart."""

from __future__ import annotations

from clickpulse_grafana.panel_model import Column, Dashboard, Panel
from clickpulse_grafana.sql_fragments import (
    REPORT_STEP,
    filled_over_time,
    filled_per_series,
)

# Seconds per bucket: the dashboard's interval, at least 30 s.
STEP = REPORT_STEP
BUCKET = "toStartOfInterval({column}, INTERVAL " + STEP + " second)"
COLLECTOR = "ServiceName = 'clickpulse-otelcol'"
MONITOR = "ServiceName = 'clickpulse-monitor'"
SIGNAL = (
    "multiIf(MetricName LIKE '%spans', 'traces', MetricName LIKE '%metric_points', 'metrics',"
    " 'logs')"
)


def _event_deltas(events: list[str]) -> str:
    """Each sample of these ClickHouse events (counters since its start) as its increase since
    the one before (`ts`, `name`, `delta`); after a restart, the new total."""
    listed = ", ".join(f"'{event}'" for event in events)
    return f"""(
    SELECT ts, name,
           value - lagInFrame(value, 1, value) OVER (PARTITION BY name ORDER BY ts) AS step,
           if(step < 0, value, step) AS delta
    FROM ops.clickhouse_samples
    WHERE $__timeFilter(ts) AND source = 'events' AND name IN ({listed})
)"""


def _events_per_minute(names: dict[str, str]) -> str:
    """ClickHouse events per minute, one column per event."""
    columns = ", ".join(
        f"toNullable(sumIf(delta, name = '{event}') * 60 / {STEP}) AS {alias}"
        for alias, event in names.items()
    )
    return filled_over_time(
        f"""
SELECT {BUCKET.format(column="ts")} AS time, {columns}
FROM {_event_deltas(list(names.values()))}
GROUP BY time""",
        STEP,
    )


PIPELINE = Dashboard(
    uid="clickpulse-pipeline",
    title="Pipeline",
    description="The stack watching itself: the collector's ingest, refusals, failures and"
    " queue, visibility lag, ClickHouse's parts, inserts, merges and disk, PostgreSQL's"
    " sessions, and the alert rules' states.",
    request_variables=False,
    panels=[
        Panel(
            title="Ingest rate by signal",
            type="timeseries",
            description="Items the collector accepted per second: spans, metric points, logs.",
            # A delta counter reports nothing for an interval without items: those buckets
            # are 0 (WITH FILL, per signal), not gaps.
            sql=filled_per_series(
                f"""    SELECT {BUCKET.format(column="TimeUnix")} AS time, {SIGNAL} AS signal,
           sum(Value) / {STEP} AS accepted
    FROM otel.otel_metrics_sum
    WHERE $__timeFilter(TimeUnix) AND {COLLECTOR} AND MetricName IN (
        'otelcol_receiver_accepted_spans', 'otelcol_receiver_accepted_metric_points',
        'otelcol_receiver_accepted_log_records')
    GROUP BY time, signal""",
                "signal",
                STEP,
            ),
            shape="timeseries",
            unit="short",
            value_range=(0, 1e7),
        ),
        Panel(
            title="Refused and failed items per minute",
            type="timeseries",
            description="Refused by the receiver (memory limiter: senders retry), failed in the"
            " receiver, and given up by the exporter (a permanent error: lost).",
            sql=filled_over_time(
                f"""
SELECT {BUCKET.format(column="TimeUnix")} AS time,
       toNullable(sumIf(Value, MetricName LIKE 'otelcol_receiver_refused_%') * 60 / {STEP})
           AS refused,
       toNullable(sumIf(Value, MetricName LIKE 'otelcol_receiver_failed_%') * 60 / {STEP})
           AS failed,
       toNullable(sumIf(Value, MetricName LIKE 'otelcol_exporter_send_failed_%') * 60 / {STEP})
           AS dropped
FROM otel.otel_metrics_sum
WHERE $__timeFilter(TimeUnix) AND {COLLECTOR}
  AND (MetricName LIKE 'otelcol_receiver_refused_%' OR MetricName LIKE 'otelcol_receiver_failed_%'
       OR MetricName LIKE 'otelcol_exporter_send_failed_%')
GROUP BY time""",
                STEP,
            ),
            shape="timeseries",
            unit="short",
            value_range=(0, 1e9),
        ),
        Panel(
            title="Collector sending queue",
            type="timeseries",
            description="Items waiting to be written to ClickHouse, per signal (on disk: they"
            " survive a restart). Up to a second of data is normal; it grows while ClickHouse"
            " is away and lands here once it is back.",
            sql=filled_per_series(
                f"""    SELECT {BUCKET.format(column="TimeUnix")} AS time,
           Attributes['data_type'] AS signal, toNullable(max(Value)) AS queued
    FROM otel.otel_metrics_gauge
    WHERE $__timeFilter(TimeUnix) AND {COLLECTOR}
      AND MetricName = 'otelcol_exporter_queue_size'
    GROUP BY time, signal""",
                "signal",
                STEP,
            ),
            shape="timeseries",
            unit="short",
            value_range=(0, 2e7),
        ),
        Panel(
            title="Visibility lag",
            type="timeseries",
            description="From a request's end to its row being queryable, by the time it arrived.",
            sql=filled_over_time(
                f"""
SELECT {BUCKET.format(column="ingested_at")} AS time,
       toNullable(quantile(0.5)(lag)) AS p50, toNullable(quantile(0.95)(lag)) AS p95,
       toNullable(max(lag)) AS max
FROM (
    SELECT ingested_at,
           (toUnixTimestamp64Milli(ingested_at) - toUnixTimestamp64Milli(timestamp)
            - response_time_ms) / 1000 AS lag
    FROM analytics.request_metrics
    WHERE timestamp >= $__fromTime - INTERVAL 15 MINUTE AND timestamp <= $__toTime
      AND $__timeFilter(ingested_at)
)
GROUP BY time""",
                STEP,
            ),
            shape="timeseries",
            unit="s",
            value_range=(-5, 86400),
        ),
        Panel(
            title="ClickHouse active parts per partition",
            type="timeseries",
            description="The largest partition of each table. Inserts are delayed from 1,000"
            " and refused from 3,000; the alert warns at 300.",
            sql=filled_per_series(
                f"""    SELECT {BUCKET.format(column="ts")} AS time, object AS table,
           toNullable(max(value)) AS parts
    FROM ops.clickhouse_samples
    WHERE $__timeFilter(ts) AND source = 'parts' AND name = 'active_parts'
      AND (object LIKE 'otel.%' OR object LIKE 'analytics.%')
    GROUP BY time, table""",
                "table",
                STEP,
            ),
            shape="timeseries",
            unit="short",
            value_range=(1, 1e5),
            width=24,
        ),
        Panel(
            title="ClickHouse inserts and merges per minute",
            type="timeseries",
            sql=_events_per_minute(
                {
                    "inserts": "InsertQuery",
                    "failed_inserts": "FailedInsertQuery",
                    "merges": "Merge",
                }
            ),
            shape="timeseries",
            unit="short",
            value_range=(0, 1e8),
        ),
        Panel(
            title="ClickHouse insert latency",
            type="timeseries",
            description="Average time of an INSERT query (system.events: InsertQueryTime"
            " over InsertQuery), the collector's batches and the refreshable view's samples.",
            sql=filled_over_time(
                f"""
SELECT time, toNullable(if(inserts = 0, 0, micros / inserts / 1000)) AS insert_ms
FROM (
    SELECT {BUCKET.format(column="ts")} AS time,
           sumIf(delta, name = 'InsertQueryTimeMicroseconds') AS micros,
           sumIf(delta, name = 'InsertQuery') AS inserts
    FROM {_event_deltas(["InsertQueryTimeMicroseconds", "InsertQuery"])}
    GROUP BY time
)""",
                STEP,
            ),
            shape="timeseries",
            unit="ms",
            value_range=(0, 600_000),
        ),
        Panel(
            title="ClickHouse disk",
            type="timeseries",
            sql=filled_over_time(
                f"""
SELECT {BUCKET.format(column="ts")} AS time,
       toNullable(argMaxIf(value, ts, name = 'total_bytes')
                  - argMaxIf(value, ts, name = 'free_bytes')) AS used,
       toNullable(argMaxIf(value, ts, name = 'free_bytes')) AS free
FROM ops.clickhouse_samples
WHERE $__timeFilter(ts) AND source = 'disks'
GROUP BY time""",
                STEP,
            ),
            shape="timeseries",
            unit="bytes",
            value_range=(0, 1e15),
        ),
        Panel(
            title="PostgreSQL sessions by state",
            type="timeseries",
            description="Client sessions (the services pool 16 per process), of"
            " max_connections 300.",
            sql=filled_per_series(
                f"""    SELECT {BUCKET.format(column="TimeUnix")} AS time,
           Attributes['state'] AS state, toNullable(max(Value)) AS sessions
    FROM otel.otel_metrics_gauge
    WHERE $__timeFilter(TimeUnix) AND {MONITOR} AND MetricName = 'postgresql.backends'
    GROUP BY time, state""",
                "state",
                STEP,
            ),
            shape="timeseries",
            unit="short",
            value_range=(0, 10_000),
        ),
        Panel(
            title="PostgreSQL: oldest transaction and lock waits",
            type="timeseries",
            sql=filled_over_time(
                f"""
SELECT {BUCKET.format(column="TimeUnix")} AS time,
       toNullable(maxIf(Value, MetricName = 'postgresql.transaction.oldest.duration'))
           AS oldest_transaction,
       toNullable(maxIf(Value, MetricName = 'postgresql.locks.waiting')) AS lock_waits,
       toNullable(minIf(Value, MetricName = 'postgresql.up')) AS up
FROM otel.otel_metrics_gauge
WHERE $__timeFilter(TimeUnix) AND {MONITOR} AND MetricName IN (
    'postgresql.transaction.oldest.duration', 'postgresql.locks.waiting', 'postgresql.up')
GROUP BY time""",
                STEP,
            ),
            shape="timeseries",
            unit="s",
            columns={"lock_waits": Column(unit="short"), "up": Column(unit="bool")},
            value_range=(0, 1e6),
        ),
        Panel(
            title="Alerts pending and firing",
            type="timeseries",
            description="Alert instances the monitor saw pending or firing (its"
            " clickpulse.alert.state gauge).",
            sql=filled_over_time(
                f"""
SELECT time, toNullable(countIf(state = 1)) AS pending, toNullable(countIf(state = 2)) AS firing
FROM (
    SELECT {BUCKET.format(column="TimeUnix")} AS time, Attributes['alert.rule'] AS rule,
           Attributes['alert.instance'] AS instance, max(Value) AS state
    FROM otel.otel_metrics_gauge
    WHERE $__timeFilter(TimeUnix) AND {MONITOR} AND MetricName = 'clickpulse.alert.state'
    GROUP BY time, rule, instance
)
GROUP BY time""",
                STEP,
            ),
            shape="timeseries",
            unit="short",
            value_range=(0, 10_000),
        ),
        Panel(
            title="Alert rules now",
            type="table",
            description="Each rule's instances at the monitor's last report in the range,"
            " firing first (`nox -s alerts` evaluates them on demand).",
            sql=f"""
SELECT Attributes['alert.rule'] AS rule, Attributes['alert.instance'] AS instance,
       multiIf(argMax(Value, TimeUnix) = 2, 'firing', argMax(Value, TimeUnix) = 1, 'pending',
               'ok') AS state,
       max(TimeUnix) AS reported
FROM otel.otel_metrics_gauge
WHERE $__timeFilter(TimeUnix) AND {MONITOR} AND MetricName = 'clickpulse.alert.state'
GROUP BY rule, instance
ORDER BY argMax(Value, TimeUnix) DESC, rule, instance
LIMIT 100""",
            shape="table",
            width=24,
            columns={"reported": Column(header="last report")},
        ),
    ],
)
