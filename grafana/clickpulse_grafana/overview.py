"""The Overview dashboard: traffic, latency, refused requests, status codes, busiest endpoints,
users by region."""

from __future__ import annotations

from clickpulse_grafana.panel_model import Dashboard, Panel
from clickpulse_grafana.panels import rollup_series
from clickpulse_grafana.sql_fragments import (
    AUDIENCE_HOURLY,
    AUDIENCE_RAW,
    FILTERS,
    HLL,
    P95,
    ROLLUP,
    STEP,
)

OVERVIEW = Dashboard(
    uid="clickpulse-overview",
    title="Overview",
    description="Traffic, latency, refused requests (401, 403, 429, 503), status codes, busiest"
    " endpoints and users by region.",
    panels=[
        rollup_series(
            "Requests per second by service",
            f"sum(requests) / {STEP} AS rps",
            by_service=True,
            unit="reqps",
            value_range=(0, 1e6),
        ),
        rollup_series(
            "Latency: average and p95",
            # Nullable: a minute without requests has no latency (a gap, not 0 ms).
            f"sum(latency_sum_ms) / nullIf(sum(requests), 0) AS avg_ms,"
            f" toNullable({P95}) AS p95_ms",
            unit="ms",
            value_range=(0, 600_000),
        ),
        # Who was turned away, and why: no or a bad token, no right, over a rate limit (the
        # services' settings), over capacity (admission control or a database outage).
        rollup_series(
            "Refused requests per second",
            f"sumIf(requests, status_code = 401) / {STEP} AS unauthorized,"
            f" sumIf(requests, status_code = 403) / {STEP} AS forbidden,"
            f" sumIf(requests, status_code = 429) / {STEP} AS rate_limited,"
            f" sumIf(requests, status_code = 503) / {STEP} AS shed",
            unit="reqps",
            value_range=(0, 1e6),
            width=24,
        ),
        Panel(
            title="Status codes",
            type="piechart",
            sql=f"""
SELECT toString(status_code) AS status, sum(requests) AS requests
FROM {ROLLUP}
WHERE {FILTERS}
GROUP BY status ORDER BY requests DESC""",
            shape="table",
            width=8,
            unit="short",
            uses_rollup=True,
        ),
        Panel(
            title="Top 10 endpoints",
            type="bargauge",
            sql=f"""
SELECT concat(method, ' ', endpoint) AS route, sum(requests) AS requests
FROM {ROLLUP}
WHERE {FILTERS} AND endpoint != ''
GROUP BY route ORDER BY requests DESC LIMIT 10""",
            shape="table",
            width=8,
            unit="short",
            color="blue",
            uses_rollup=True,
        ),
        Panel(
            title="Active users by region",
            type="barchart",
            sql=f"""
SELECT region, sum(users) AS users FROM (
  SELECT region, {HLL}(users) AS users FROM {AUDIENCE_HOURLY} GROUP BY region
  UNION ALL
  SELECT region, uniqIf(user_id, user_id != '') FROM {AUDIENCE_RAW} GROUP BY region
) GROUP BY region ORDER BY users DESC""",
            shape="table",
            width=8,
            unit="short",
            x_field="region",
            uses_rollup=True,
        ),
    ],
)
