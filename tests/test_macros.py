"""The plugin's macros, expanded as grafana-clickhouse-datasource v4.19+ does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from clickpulse_grafana.macros import TimeRange, Variables, expand

pytestmark = pytest.mark.no_stack

RANGE = TimeRange(
    datetime(2026, 11, 29, 10, 0, tzinfo=UTC), datetime(2026, 11, 29, 11, 0, tzinfo=UTC), 360
)
F, T = 1795946400, 1795950000


def test_time_macros() -> None:
    assert RANGE.interval_s == 10
    assert expand("$__timeFilter(ts)", RANGE) == f"ts >= toDateTime({F}) AND ts <= toDateTime({T})"
    assert expand("$__timeFilter_ms(ts)", RANGE) == (
        f"ts >= fromUnixTimestamp64Milli({F}000) AND ts <= fromUnixTimestamp64Milli({T}000)"
    )
    assert expand("$__fromTime, $__toTime", RANGE) == f"toDateTime({F}), toDateTime({T})"
    assert expand("$__interval_s", RANGE) == "10"
    assert expand("$__timeInterval(ts)", RANGE) == (
        "toStartOfInterval(toDateTime(ts), INTERVAL 10 second)"
    )


@pytest.mark.parametrize(
    ("hours", "interval_s"),
    # Grafana's rounded auto interval at 300 points: the rollup choices depend on it.
    [(1, 10), (6, 60), (24, 300), (48, 600), (24 * 7, 1800), (24 * 30, 7200)],
)
def test_interval_is_rounded_as_grafana_rounds_it(hours: int, interval_s: int) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    assert TimeRange(start, start + timedelta(hours=hours)).interval_s == interval_s


def test_conditional_all_and_sqlstring_variables() -> None:
    sql = "$__conditionalAll(s IN (${service:sqlstring}), $service)"
    assert expand(sql, RANGE) == "1=1"
    assert expand(sql, RANGE, Variables({"service": ["a", "b'c"]})) == "s IN ('a','b\\'c')"
    assert expand(sql, RANGE, Variables({"service": "$__all"})) == "1=1"


def test_nested_parentheses_and_leftovers() -> None:
    assert expand("$__timeFilter(toDate(x))", RANGE).startswith("toDate(x) >= ")
    with pytest.raises(ValueError, match="unknown macro"):
        expand("$__timeGroup(ts, '1m')", RANGE)
    with pytest.raises(ValueError, match="outside"):
        expand("s IN (${service:sqlstring})", RANGE)
