"""The Business dashboard: revenue, active users, orders, conversion, the most viewed products
and the checkout funnel."""

from __future__ import annotations

from clickpulse_grafana.panel_model import Column, Dashboard, Panel
from clickpulse_grafana.panels import rollup_series
from clickpulse_grafana.sql_fragments import (
    AUDIENCE_HOURLY,
    AUDIENCE_RAW,
    AUDIENCE_STEP,
    FILTERS,
    FUNNEL,
    HLL,
    RAW,
    ROLLUP,
    filled_over_time,
)


def _stat(title: str, sql: str, *, unit: str, value_range: tuple[float, float]) -> Panel:
    return Panel(
        title=title,
        type="stat",
        sql=sql,
        shape="value",
        width=6,
        height=6,
        unit=unit,
        uses_rollup=True,
        value_range=value_range,
    )


BUSINESS = Dashboard(
    uid="clickpulse-business",
    title="Business",
    description="Revenue, active users, most viewed products and the checkout funnel.",
    panels=[
        _stat(
            "Revenue",
            f"SELECT sum(revenue) AS revenue\nFROM {ROLLUP}\nWHERE {FILTERS}",
            unit="currencyUSD",
            value_range=(0, 1e12),
        ),
        _stat(
            "Active users",
            f"""
SELECT sum(users) AS users FROM (
  SELECT {HLL}(users) AS users FROM {AUDIENCE_HOURLY}
  UNION ALL
  SELECT uniqIf(user_id, user_id != '') FROM {AUDIENCE_RAW}
)""",
            unit="none",
            value_range=(0, 1e9),
        ),
        _stat(
            "Orders",
            f"SELECT sum(orders) AS orders\nFROM {ROLLUP}\nWHERE {FILTERS}",
            unit="none",
            value_range=(0, 1e9),
        ),
        _stat(
            "Checkout conversion",
            f"""
SELECT least(sum(checked_out) / greatest(sum(carted), 1), 1) AS conversion
FROM ({FUNNEL}
)""",
            unit="percentunit",
            value_range=(0, 1),
        ),
        rollup_series(
            "Revenue over time",
            "sum(revenue) AS revenue",
            unit="currencyUSD",
            value_range=(0, 1e12),
        ),
        Panel(
            title="Active users over time",
            type="timeseries",
            # A bucket without a user is 0 users (filled), not a line across it.
            sql=filled_over_time(
                f"""
SELECT time, sum(users) AS users FROM (
  SELECT toStartOfInterval(ts, INTERVAL {AUDIENCE_STEP} second) AS time,
         {HLL}(users) AS users
  FROM {AUDIENCE_HOURLY} GROUP BY time
  UNION ALL
  SELECT toStartOfInterval(timestamp, INTERVAL {AUDIENCE_STEP} second) AS time,
         uniqIf(user_id, user_id != '')
  FROM {AUDIENCE_RAW} GROUP BY time
) GROUP BY time""",
                AUDIENCE_STEP,
            ),
            shape="timeseries",
            unit="short",
            uses_rollup=True,
            value_range=(0, 1e9),
        ),
        Panel(
            title="Most viewed products",
            type="table",
            sql=f"""
SELECT ifNull(name, concat('#', toString(product_id))) AS product, category, views FROM (
  SELECT product_id, anyLast(product_name) AS name, any(product_category) AS category,
         count() AS views
  FROM {RAW}
  WHERE $__timeFilter(timestamp) AND {FILTERS}
    AND method = 'GET' AND endpoint = '/products/{{product_id}}' AND status_code = 200
  GROUP BY product_id ORDER BY views DESC LIMIT 10
) ORDER BY views DESC""",
            shape="table",
            columns={"views": Column(unit="none")},
        ),
        Panel(
            title="Funnel: sessions that viewed, added to cart, checked out",
            type="bargauge",
            sql=f"""
SELECT stage, sum(sessions) AS sessions FROM ({FUNNEL}
) ARRAY JOIN ['1 viewed a product', '2 added to cart', '3 checked out'] AS stage,
             [viewed, carted, checked_out] AS sessions
GROUP BY stage ORDER BY stage""",
            shape="table",
            unit="none",
            color="purple",
            uses_rollup=True,
        ),
    ],
)
