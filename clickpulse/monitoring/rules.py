"""The alert rules: the one source of truth. `python -m clickpulse_grafana build` renders them as
Grafana alerting provisioning (grafana/provisioning/alerting/), and the monitor and `nox -s
alerts` evaluate the same SQL against ClickHouse (clickpulse.monitoring.evaluation).

A rule's SQL is what Grafana's ClickHouse plugin runs for an alert query: the time macros
(`$__timeFilter(col)`, `$__fromTime`, `$__toTime`) cover the last `window_s` seconds before the
evaluation. It returns one row per alert instance: String columns are the instance's labels,
the column `value` is compared with the threshold. No row means no data, which is OK (the
thing the rule watches did not happen: no traffic, no checkout). Rules never read the wall
clock (now() only in `CLICKHOUSE_STARTED`, a fixed instant): they are written against
`$__toTime`, so the evaluator can also ask what a rule said a minute ago (how long a breach has
lasted, after a restart).

A breach becomes *pending*, and *firing* once it has lasted `for_s` (checked every
`group.interval_s`), as in Grafana. When ClickHouse cannot answer, a rule keeps its last state
(Grafana's KeepLast), except the one whose error is the alert (ClickHouse unreachable) and the
sending-queue rule, which the monitor then reads from the collector itself (`live`).

Thresholds, with the numbers behind them, are in each rule's comment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Condition = Literal[">", "<"]
Severity = Literal["critical", "warning"]
OnError = Literal["keep", "alerting"]
Unit = Literal["ratio", "ms", "s", "count", "currency", "flag"]
LiveSource = Literal["collector_queue_backlog"]

COLLECTOR = "ServiceName = 'clickpulse-otelcol'"
MIN_BACKLOG_ITEMS = 100
MONITOR = "ServiceName = 'clickpulse-monitor'"
# The moment ClickHouse started: a fixed instant, not the wall clock.
CLICKHOUSE_STARTED = "(now() - toIntervalSecond(uptime()))"


def silence_s(column: str) -> str:
    """The seconds from `column`'s newest value to the window's end, counted from ClickHouse's
    start at most (the stack starts ClickHouse with the rest). Right after `nox -s up` a
    component's newest report is from before the stop: Grafana, which evaluates the same SQL
    with no notion of the stack's start, showed "Collector unreachable" pending on every start
    until the collector's first report landed, ~12 s in."""
    newest = f"greatest(max({column}), {CLICKHOUSE_STARTED})"
    return f"toFloat64(dateDiff('second', {newest}, $__toTime))"


@dataclass(frozen=True)
class Group:
    """Rules evaluated together, at one interval (a Grafana rule group)."""

    name: str
    interval_s: int


# Each evaluation is a query (2-16 ms of ClickHouse's CPU, measured one by one): the intervals
# are what the alerts need, no shorter. All 17 at 10-15 s cost ClickHouse 1.2 % of a core; at
# these, 0.4 % (bench section 5).
# ClickHouse down must be reported within 60 s: 10 s and a 20 s `for` fire it 20-30 s after
# the first failed query (a 2 ms query).
PIPELINE = Group("pipeline", 10)
# The collector: silent, its queue not draining, what it refused or dropped; the visibility lag.
INGEST = Group("ingest", 30)
# ClickHouse's own samples change every 15 s and matter over minutes.
CLICKHOUSE = Group("clickhouse", 60)
POSTGRES = Group("postgres", 30)
# A 5xx share above the threshold must be reported within 2 minutes: 30 s + a 30 s `for`.
RED = Group("red", 30)
BUSINESS = Group("business", 60)
GROUPS = (PIPELINE, INGEST, CLICKHOUSE, POSTGRES, RED, BUSINESS)


@dataclass(frozen=True, kw_only=True)
class Rule:
    uid: str
    title: str
    group: Group
    sql: str
    window_s: int
    condition: Condition
    threshold: float
    for_s: int
    unit: Unit
    severity: Severity
    summary: str
    on_error: OnError = "keep"
    live: LiveSource | None = None

    def breaches(self, value: float | None) -> bool:
        """None is an error, and breaches only a rule that alerts on errors."""
        if value is None:
            return self.on_error == "alerting"
        return value > self.threshold if self.condition == ">" else value < self.threshold


RULES: tuple[Rule, ...] = (
    # --- The pipeline -------------------------------------------------------------------------
    Rule(
        uid="clickpulse-clickhouse-unreachable",
        title="ClickHouse unreachable",
        group=PIPELINE,
        # The query cannot breach: the alert is its failure (a refused connection, a 5 s timeout).
        sql="SELECT toFloat64(0) AS value",
        window_s=60,
        condition=">",
        threshold=0,
        for_s=20,
        unit="flag",
        severity="critical",
        on_error="alerting",
        summary="ClickHouse does not answer queries: dashboards are blank and the collector"
        " keeps spans in its on-disk queue until it is back.",
    ),
    Rule(
        uid="clickpulse-collector-silent",
        title="Collector unreachable",
        group=INGEST,
        # The collector reports itself every 10 s; 40 s of silence is four missed reports. Its
        # newest report up to the window's end, not only within the window: a collector silent
        # for longer than the window still alerts, and one that has never reported (the first
        # ~12 s of a fresh stack) is no row. Over the window alone, max() of no rows read 1970,
        # and every fresh `nox -s up` showed this alert firing.
        sql=f"""
SELECT {silence_s("TimeUnix")} AS value
FROM otel.otel_metrics_gauge
WHERE TimeUnix <= $__toTime AND {COLLECTOR} AND MetricName = 'otelcol_process_memory_rss'
HAVING count() > 0""",
        window_s=300,
        condition=">",
        threshold=40,
        # Right after a ClickHouse outage the collector's reports of it are still landing from
        # its queue (78 s old in the drill, gone 10 s later): 30 s keeps that from paging.
        for_s=30,
        unit="s",
        severity="critical",
        summary="No report from the OpenTelemetry Collector: services cannot deliver spans"
        " (their relays queue up to 65,536 and retry for 60 s).",
    ),
    Rule(
        uid="clickpulse-collector-backlog",
        title="Collector sending queue backlog",
        group=INGEST,
        # Seconds of data waiting in the sending queue: the queue's size over the rate it is
        # filled. It batches for up to 1 s (flush_timeout), so ~1 s is normal at any rate (0.3 s
        # idle, 0.7 s at 30,000 spans/s); during a ClickHouse outage it grows a second a second.
        # Under 100 items is no backlog: one span waiting for its batch over a rate of one span
        # in 30 s would read as 30 s.
        sql=f"""
SELECT signal,
       if(queued < {MIN_BACKLOG_ITEMS}, 0, queued / greatest(accepted / {{window}}, 0.001))
           AS value
FROM (
    SELECT Attributes['data_type'] AS signal, argMax(Value, TimeUnix) AS queued
    FROM otel.otel_metrics_gauge
    WHERE $__timeFilter(TimeUnix) AND {COLLECTOR} AND MetricName = 'otelcol_exporter_queue_size'
    GROUP BY signal
) AS queue
LEFT JOIN (
    SELECT multiIf(MetricName = 'otelcol_receiver_accepted_spans', 'traces',
                   MetricName = 'otelcol_receiver_accepted_metric_points', 'metrics',
                   'logs') AS signal,
           sum(Value) AS accepted
    FROM otel.otel_metrics_sum
    WHERE $__timeFilter(TimeUnix) AND {COLLECTOR} AND MetricName IN (
        'otelcol_receiver_accepted_spans', 'otelcol_receiver_accepted_metric_points',
        'otelcol_receiver_accepted_log_records')
    GROUP BY signal
) AS rate USING signal""".replace("{window}", "dateDiff('second', $__fromTime, $__toTime)"),
        window_s=30,
        condition=">",
        threshold=15,
        # 15 s of data is already a breach that lasted: no `for` on top.
        for_s=0,
        unit="s",
        severity="warning",
        summary="The collector's sending queue holds more than 15 s of data and is not"
        " draining: ClickHouse refuses or is too slow for inserts.",
        live="collector_queue_backlog",
    ),
    Rule(
        uid="clickpulse-collector-refused",
        title="Collector refusing data",
        group=INGEST,
        # The memory limiter refuses when the collector nears 1 GiB: the SDKs retry, but a
        # refusal means the pipeline is over capacity.
        sql=f"""
SELECT replaceRegexpOne(MetricName, '^otelcol_receiver_refused_', '') AS signal,
       sum(Value) AS value
FROM otel.otel_metrics_sum
WHERE $__timeFilter(TimeUnix) AND {COLLECTOR} AND MetricName IN (
    'otelcol_receiver_refused_spans', 'otelcol_receiver_refused_metric_points',
    'otelcol_receiver_refused_log_records')
GROUP BY signal""",
        window_s=60,
        condition=">",
        threshold=0,
        for_s=0,
        unit="count",
        severity="warning",
        summary="The collector refused spans, metric points or log records in the last minute"
        " (memory limiter): senders retry, but the pipeline is over capacity.",
    ),
    Rule(
        uid="clickpulse-collector-export-failed",
        title="Collector dropped data",
        group=INGEST,
        # Retries never give up (max_elapsed_time 0), so a failed send is a permanent error
        # (a schema or permission mismatch): those items are gone.
        sql=f"""
SELECT replaceRegexpOne(MetricName, '^otelcol_exporter_send_failed_', '') AS signal,
       sum(Value) AS value
FROM otel.otel_metrics_sum
WHERE $__timeFilter(TimeUnix) AND {COLLECTOR} AND MetricName IN (
    'otelcol_exporter_send_failed_spans', 'otelcol_exporter_send_failed_metric_points',
    'otelcol_exporter_send_failed_log_records')
GROUP BY signal""",
        window_s=300,
        condition=">",
        threshold=0,
        for_s=0,
        unit="count",
        severity="critical",
        summary="The collector's ClickHouse exporter gave up on items (a permanent error such"
        " as a schema or permission mismatch): they are lost.",
    ),
    Rule(
        uid="clickpulse-visibility-lag",
        title="Visibility lag",
        group=INGEST,
        # From a request's end to its row being queryable: p99 0.5-0.9 s at 30,000 spans/s
        # (bench section 1), ~2.5 s under the load of `nox -s load` (a small batch waits up to
        # 2 s in the collector). A collector restart (drill
        # 1) makes a p95 of 13 s for a minute, which is no reason to page; a minute of
        # ClickHouse outage makes 70 s. Rows that arrived in the window, produced up to 15 min
        # before it.
        sql="""
SELECT quantile(0.95)(
           (toUnixTimestamp64Milli(ingested_at) - toUnixTimestamp64Milli(timestamp)
            - response_time_ms) / 1000) AS value
FROM analytics.request_metrics
WHERE timestamp >= $__fromTime - INTERVAL 15 MINUTE AND $__timeFilter(ingested_at)
HAVING count() > 0""",
        window_s=60,
        condition=">",
        threshold=30,
        for_s=0,
        unit="s",
        severity="warning",
        summary="Requests take more than 30 s (p95) to become queryable: the pipeline is"
        " behind, or catching up after an outage.",
    ),
    Rule(
        uid="clickpulse-clickhouse-too-many-parts",
        title="ClickHouse: too many parts",
        group=CLICKHOUSE,
        # Inserts are delayed from 1,000 active parts in a partition (parts_to_delay_insert in
        # 26.9) and refused from 3,000: warn at 300, while merges can still catch up.
        sql="""
SELECT object AS table, max(value) AS value
FROM ops.clickhouse_samples
WHERE $__timeFilter(ts) AND source = 'parts' AND name = 'active_parts'
GROUP BY table""",
        window_s=60,
        condition=">",
        threshold=300,
        for_s=300,
        unit="count",
        severity="warning",
        summary="A partition has more than 300 active parts: inserts are too small or too"
        " frequent for merges to keep up (ClickHouse delays inserts from 1,000).",
    ),
    Rule(
        uid="clickpulse-clickhouse-failed-inserts",
        title="ClickHouse: failed inserts",
        group=CLICKHOUSE,
        sql="""
SELECT deltaSumTimestamp(value, ts) AS value
FROM ops.clickhouse_samples
WHERE $__timeFilter(ts) AND source = 'events'
  AND name IN ('FailedInsertQuery', 'RejectedInserts')
HAVING count() > 1""",
        window_s=300,
        condition=">",
        threshold=0,
        for_s=0,
        unit="count",
        severity="warning",
        summary="ClickHouse failed or refused inserts in the last 5 minutes (see"
        " ops.clickhouse_samples, source 'errors', for the messages).",
    ),
    Rule(
        uid="clickpulse-clickhouse-disk",
        title="ClickHouse: disk almost full",
        group=CLICKHOUSE,
        sql="""
SELECT object AS disk,
       argMaxIf(value, ts, name = 'free_bytes') / argMaxIf(value, ts, name = 'total_bytes')
           AS value
FROM ops.clickhouse_samples
WHERE $__timeFilter(ts) AND source = 'disks'
GROUP BY disk""",
        window_s=60,
        condition="<",
        threshold=0.1,
        for_s=300,
        unit="ratio",
        severity="critical",
        summary="Less than 10 % of ClickHouse's disk is free.",
    ),
    Rule(
        uid="clickpulse-clickhouse-samples-stale",
        title="ClickHouse health samples stale",
        group=CLICKHOUSE,
        # The refreshable view samples every 15 s; a minute without one means it stopped.
        sql=f"""
SELECT {silence_s("ts")} AS value
FROM ops.clickhouse_samples
WHERE $__timeFilter(ts) AND source = 'metrics'""",
        window_s=600,
        condition=">",
        threshold=60,
        for_s=0,
        unit="s",
        severity="warning",
        summary="ClickHouse stopped sampling its own health (the refreshable view"
        " ops.clickhouse_samples_refresh: see system.view_refreshes).",
    ),
    # --- PostgreSQL, from the monitor's samples of its statistics views ------------------------
    Rule(
        uid="clickpulse-postgres-down",
        title="PostgreSQL unreachable",
        group=POSTGRES,
        sql=f"""
SELECT min(Value) AS value
FROM otel.otel_metrics_gauge
WHERE $__timeFilter(TimeUnix) AND {MONITOR} AND MetricName = 'postgresql.up'
HAVING count() > 0""",
        # A sample every 15 s, a failed one is one without an answer within 3 s.
        window_s=30,
        condition="<",
        threshold=1,
        for_s=30,
        unit="flag",
        severity="critical",
        summary="The monitor cannot reach PostgreSQL: the services answer 503 to everything"
        " that needs the database.",
    ),
    Rule(
        uid="clickpulse-postgres-connections",
        title="PostgreSQL connections near the limit",
        group=POSTGRES,
        # Each service process pools 16 connections; max_connections is 300 here.
        sql=f"""
SELECT min(used / limit) AS value
FROM (
    SELECT TimeUnix,
           sumIf(Value, MetricName = 'postgresql.backends') AS used,
           maxIf(Value, MetricName = 'postgresql.connection.max') AS limit
    FROM otel.otel_metrics_gauge
    WHERE $__timeFilter(TimeUnix) AND {MONITOR}
      AND MetricName IN ('postgresql.backends', 'postgresql.connection.max')
    GROUP BY TimeUnix
    HAVING limit > 0
)
HAVING count() > 0""",
        window_s=60,
        condition=">",
        threshold=0.8,
        for_s=60,
        unit="ratio",
        severity="warning",
        summary="More than 80 % of PostgreSQL's max_connections are in use.",
    ),
    Rule(
        uid="clickpulse-postgres-long-transaction",
        title="PostgreSQL: long transaction",
        group=POSTGRES,
        # Requests run one short transaction each (ms); a minute-long one holds locks and
        # keeps vacuum from cleaning up.
        sql=f"""
SELECT max(Value) AS value
FROM otel.otel_metrics_gauge
WHERE $__timeFilter(TimeUnix) AND {MONITOR}
  AND MetricName = 'postgresql.transaction.oldest.duration'
HAVING count() > 0""",
        window_s=60,
        condition=">",
        threshold=60,
        for_s=0,
        unit="s",
        severity="warning",
        summary="A PostgreSQL transaction has been open for more than a minute.",
    ),
    Rule(
        uid="clickpulse-postgres-lock-waits",
        title="PostgreSQL: sessions waiting on locks",
        group=POSTGRES,
        # Checkouts lock stock rows for milliseconds; waiters at every sample for a minute is
        # contention, not a blip.
        sql=f"""
SELECT min(Value) AS value
FROM otel.otel_metrics_gauge
WHERE $__timeFilter(TimeUnix) AND {MONITOR} AND MetricName = 'postgresql.locks.waiting'
HAVING count() > 0""",
        window_s=60,
        condition=">",
        threshold=0,
        for_s=60,
        unit="count",
        severity="warning",
        summary="Sessions have been waiting on locks at every sample for over a minute.",
    ),
    # --- RED, per service and endpoint ----------------------------------------------------
    Rule(
        uid="clickpulse-5xx-share",
        title="Server errors (5xx share)",
        group=RED,
        # At least 20 requests in the minute, so one failed request at idle does not page.
        # From the raw requests: a minute's window, not the rollup's whole minutes.
        sql="""
SELECT service_name AS service, countIf(status_code >= 500) / count() AS value
FROM analytics.request_metrics
WHERE $__timeFilter(timestamp)
GROUP BY service
HAVING count() >= 20""",
        window_s=60,
        condition=">",
        threshold=0.05,
        for_s=30,
        unit="ratio",
        severity="critical",
        summary="More than 5 % of a service's requests in the last minute failed with a 5xx"
        " (503: database unavailable or shedding load).",
    ),
    Rule(
        uid="clickpulse-p95-latency",
        title="p95 latency per endpoint",
        group=RED,
        # The dashboards colour latency red from 500 ms; p95 here is 41 ms at capacity. From
        # the minute rollup's latency histograms (within one 9 % bucket of the exact value):
        # the raw rows of 5 minutes are 60,000 at 200 req/s, the rollup's a few hundred.
        sql="""
SELECT concat(method, ' ', endpoint) AS route,
       clickpulse_latency_quantile(sumMap(latency_histogram), 0.95) AS value
FROM analytics.request_metrics_1m
WHERE $__timeFilter(ts) AND endpoint != ''
GROUP BY route
HAVING sum(requests) >= 20""",
        window_s=300,
        condition=">",
        threshold=500,
        for_s=120,
        unit="ms",
        severity="warning",
        summary="An endpoint's p95 response time has been above 500 ms for 2 minutes.",
    ),
    # --- Business -----------------------------------------------------------------------------
    Rule(
        uid="clickpulse-no-revenue",
        title="Checkouts but no revenue",
        group=BUSINESS,
        sql="""
SELECT sumIf(ifNull(transaction_amount, 0), status_code < 400) AS value
FROM analytics.request_metrics
WHERE $__timeFilter(timestamp) AND method = 'POST' AND endpoint = '/checkout'
HAVING count() >= 5""",
        window_s=600,
        condition="<",
        threshold=0.01,
        for_s=60,
        unit="currency",
        severity="critical",
        summary="At least 5 checkouts were attempted in 10 minutes and none brought revenue.",
    ),
)


def rule(uid: str) -> Rule:
    return next(r for r in RULES if r.uid == uid)
