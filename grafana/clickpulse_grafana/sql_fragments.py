"""SQL the panels share: the variable filters, the rollup reader and its bucket, latency
quantiles, distinct users and the funnel. Panels over time read the rollups: per minute, or per
hour when the range is wide (Grafana's interval >= 30 min, i.e. ranges of about a week or
more); distinct users and sessions read hourly HyperLogLog states from a day on. Every panel
answers a week of 10M requests within 150 ms (docs/benchmarks.md)."""

from __future__ import annotations

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
AUDIENCE_STEP = f"if({AUDIENCE_WIDE}, greatest($__interval_s, 3600), greatest($__interval_s, 60))"
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


# Seconds per bucket of what is reported on a timer: the collector every 10 s, the services'
# processes every 5 s, the monitor's samples about every 15 s. A finer bucket holds a report
# and the next one none, and Grafana draws such a series as scattered dots.
REPORT_STEP = "greatest($__interval_s, 30)"


def every_bucket(step: str) -> str:
    """The ORDER BY modifier that adds the range's empty buckets of `step` seconds."""
    return (
        f"WITH FILL FROM toStartOfInterval($__fromTime, INTERVAL {step} second) TO $__toTime"
        f" STEP toIntervalSecond({step})"
    )


def filled_over_time(query: str, step: str) -> str:
    """`query`, grouped by `time` and not yet ordered, with every bucket of the range in time
    order. A bucket nothing went into holds each column's default: 0 for a count, NULL for a
    Nullable column (a gap in the line)."""
    return f"{query}\nORDER BY time {every_bucket(step)}"


def filled_per_series(query: str, series: str, step: str) -> str:
    """`query`, grouped by `time` and `series` and not yet ordered, with every bucket of the
    range for each series: WITH FILL after the sort's prefix fills each series on its own; then
    in time order, as Grafana reads a time series."""
    return f"""
SELECT * FROM (
{query}
    ORDER BY {series}, time {every_bucket(step)}
) ORDER BY time, {series}"""


def rollup_over_time(columns: str, *, by_service: bool = False) -> str:
    """The look-alike time series over the rollups: one row per bucket (and service) of the
    whole range, a bucket without requests included (WITH FILL). Without it a line ran straight
    across the minutes the stack was down, drawing traffic that never came. A filled row holds
    its columns' defaults: 0 for a count or a rate; a column undefined without requests (a
    latency, a share) is Nullable, so its row holds NULL and the line breaks there."""
    if not by_service:
        return filled_over_time(
            f"""
SELECT {BUCKET} AS time, {columns}
FROM {ROLLUP}
WHERE {FILTERS}
GROUP BY time""",
            STEP,
        )
    return filled_per_series(
        f"""    SELECT {BUCKET} AS time, service_name, {columns}
    FROM {ROLLUP}
    WHERE {FILTERS}
    GROUP BY time, service_name""",
        "service_name",
        STEP,
    )
