"""The macro expander against grafana-clickhouse-datasource v4.20 and Grafana 11.6. Expected
outputs are the plugin's own: its docs' macro table (docs/sources/query-editor.md), its Go tests
(pkg/macros/macros_test.go: TestInterpolate, TestInterpolateNestedMacros,
TestInterpolateBackslashEscapedStringLiterals, TestMacro*) and its TypeScript tests of
$__conditionalAll (src/data/CHDatasource.test.ts); the formats are @grafana/scenes'."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from clickpulse_grafana.dashboards import DASHBOARDS
from clickpulse_grafana.macros import MACROS, TimeRange, Variables, expand
from clickpulse_grafana.time_range import seconds_to_hms

pytestmark = pytest.mark.no_stack

# The plugin's test range: 2014-11-12T11:45:26.123Z to 2015-11-12T11:45:26.456Z.
FROM = datetime(2014, 11, 12, 11, 45, 26, 123_000, tzinfo=UTC)
TO = datetime(2015, 11, 12, 11, 45, 26, 456_000, tzinfo=UTC)
# 525,600 points over that year make Grafana's interval exactly the tests' one minute.
PLUGIN = TimeRange(FROM, TO, max_data_points=525_600)
# One hour over 180 points: the Go tests' 20 s interval.
TWENTY_S = TimeRange(FROM, FROM + timedelta(hours=1), max_data_points=180)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "select * from foo where $__timeFilter(cast(sth as timestamp))",
            "select * from foo where cast(sth as timestamp) >= toDateTime(1415792726) AND "
            "cast(sth as timestamp) <= toDateTime(1447328726)",
        ),
        (
            "select * from foo where $__timeFilter(cast(sth as timestamp) )",
            "select * from foo where cast(sth as timestamp) >= toDateTime(1415792726) AND "
            "cast(sth as timestamp) <= toDateTime(1447328726)",
        ),
        (
            "select * from foo where $__timeFilter_ms(cast(sth as timestamp))",
            "select * from foo where cast(sth as timestamp) >= "
            "fromUnixTimestamp64Milli(1415792726123) AND cast(sth as timestamp) <= "
            "fromUnixTimestamp64Milli(1447328726456)",
        ),
        (
            "select * from foo where ( date >= $__fromTime and date <= $__toTime ) limit 100",
            "select * from foo where ( date >= toDateTime(1415792726) and date <= "
            "toDateTime(1447328726) ) limit 100",
        ),
        (
            "select * from foo where ( date >= $__fromTime_ms ) and ( date <= $__toTime_ms )",
            "select * from foo where ( date >= fromUnixTimestamp64Milli(1415792726123) ) and "
            "( date <= fromUnixTimestamp64Milli(1447328726456) )",
        ),
        # Nested macros expand innermost first (TestInterpolateNestedMacros).
        (
            "SELECT $__timeInterval($__fromTime) AS from_time",
            "SELECT toStartOfInterval(toDateTime(toDateTime(1415792726)), INTERVAL 60 second)"
            " AS from_time",
        ),
        (
            "SELECT $__timeInterval_ms($__fromTime_ms)",
            "SELECT toStartOfInterval(toDateTime64(fromUnixTimestamp64Milli(1415792726123), 3),"
            " INTERVAL 60000 millisecond)",
        ),
        (
            "select * from foo where $__timeFilter(coalesce(closed_at, $__toTime))",
            "select * from foo where coalesce(closed_at, toDateTime(1447328726)) >= "
            "toDateTime(1415792726) AND coalesce(closed_at, toDateTime(1447328726)) <= "
            "toDateTime(1447328726)",
        ),
        # Backslash-escaped quotes do not hide what follows (BackslashEscape comment style).
        (
            "select * from foo where msg = 'it\\'s -- fine' and $__fromTime",
            "select * from foo where msg = 'it\\'s -- fine' and toDateTime(1415792726)",
        ),
        (
            "select * from foo where msg = 'a\\'/*x' and $__toTime",
            "select * from foo where msg = 'a\\'/*x' and toDateTime(1447328726)",
        ),
        (
            "select * from foo where msg = 'it''s' and $__fromTime",
            "select * from foo where msg = 'it''s' and toDateTime(1415792726)",
        ),
        # The docs' table.
        (
            "$__dateFilter(date)",
            "date >= toDate('2014-11-12') AND date <= toDate('2015-11-12')",
        ),
        (
            "$__dateTimeFilter(dateCol, timeCol)",
            "(dateCol >= toDate('2014-11-12') AND dateCol <= toDate('2015-11-12')) AND "
            "(timeCol >= toDateTime(1415792726) AND timeCol <= toDateTime(1447328726))",
        ),
        (
            "$__dt(dateCol, timeCol)",
            "(dateCol >= toDate('2014-11-12') AND dateCol <= toDate('2015-11-12')) AND "
            "(timeCol >= toDateTime(1415792726) AND timeCol <= toDateTime(1447328726))",
        ),
        ("$__timeFrom(ts)", "ts >= toDateTime(1415792726)"),
        ("$__timeTo(ts)", "ts <= toDateTime(1447328726)"),
        ("$__timeGroup(ts, 5m)", "toStartOfInterval(toDateTime(ts), INTERVAL 300 second)"),
        ("$__timeGroup(ts, '1h')", "toStartOfInterval(toDateTime(ts), INTERVAL 3600 second)"),
        # Comments are blanked before expansion: a macro in one is never evaluated.
        ("x -- $__nope\n$__fromTime", "x" + " " * 11 + "\ntoDateTime(1415792726)"),
    ],
)
def test_the_plugins_documented_examples(sql: str, expected: str) -> None:
    assert expand(sql, PLUGIN) == expected


def test_interval_macros_at_the_plugins_20_second_interval() -> None:
    assert TWENTY_S.interval_ms == 20_000
    assert expand("$__timeInterval(col)", TWENTY_S) == (
        "toStartOfInterval(toDateTime(col), INTERVAL 20 second)"
    )
    assert expand("$__timeInterval_ms(col)", TWENTY_S) == (
        "toStartOfInterval(toDateTime64(col, 3), INTERVAL 20000 millisecond)"
    )
    assert expand("$__interval_s", TWENTY_S) == "20"
    # Grafana's own, replaced in the browser: secondsToHms and the milliseconds.
    assert expand("$__interval / ${__interval_ms}", TWENTY_S) == "20s / 20000"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("$__timeFrom()", "expected 1 argument"),
        ("$__timeGroup(ts)", "expected 2 argument"),
        ("$__timeGroup(ts, not-a-duration)", "invalid interval"),
        ("$__timeFilter()", "expected 1 argument"),
        ("$__dateTimeFilter(d)", "expected 2 argument"),
        ("$__table", "no table name"),
        ("$__timeGroupAlias(ts, 1m)", "unknown macro \\$__timeGroupAlias"),
        ("$__conditionalAll(a, b, $service)", "needs two arguments"),
        ("s IN (${service:sqlstring})", "outside \\$__conditionalAll"),
    ],
)
def test_errors_say_which_macro_and_why(sql: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expand(sql, PLUGIN)


def test_every_documented_macro_is_implemented() -> None:
    documented = {
        "dateFilter", "timeFilter", "timeFilter_ms", "dateTimeFilter", "dt", "fromTime",
        "toTime", "fromTime_ms", "toTime_ms", "interval_s", "timeInterval", "timeInterval_ms",
    }  # fmt: skip
    assert documented <= set(MACROS)
    assert expand("$__conditionalAll(x, $service)", PLUGIN) == "1=1"


def test_sub_second_intervals_stay_in_milliseconds() -> None:
    short = TimeRange(FROM, FROM + timedelta(seconds=150))  # 500 ms at 300 points
    assert short.interval_ms == 500
    assert expand("$__timeInterval_ms(ts)", short) == (
        "toStartOfInterval(toDateTime64(ts, 3), INTERVAL 500 millisecond)"
    )
    assert expand("$__interval_s", short) == "1"
    assert expand("$__interval", short) == "500ms"


def test_the_interval_comes_from_milliseconds_not_whole_seconds() -> None:
    """3,749.7 s over 300 points is 12,499 ms: Grafana's 10 s. Truncated to whole seconds
    first, 3,750 s is 12,500 ms: 15 s, which the CPU and memory panels would bucket by."""
    start = datetime(2026, 11, 29, 10, 0, 0, 600_000, tzinfo=UTC)
    edge = TimeRange(start, datetime(2026, 11, 29, 11, 2, 30, 300_000, tzinfo=UTC))
    assert edge.interval_ms == 10_000 and edge.interval_s == 10


@pytest.mark.parametrize(
    ("hours", "interval_s", "text"),
    # Grafana's rounded auto interval at 300 points: the rollup choices depend on it.
    [(1, 10, "10s"), (6, 60, "1m"), (24, 300, "5m"), (48, 600, "10m"), (24 * 7, 1800, "30m")],
)
def test_interval_is_rounded_as_grafana_rounds_it(hours: int, interval_s: int, text: str) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    assert TimeRange(start, start + timedelta(hours=hours)).interval_s == interval_s
    assert TimeRange(start, start + timedelta(hours=hours)).interval_text == text


def test_seconds_to_hms_names_the_largest_unit() -> None:
    assert [seconds_to_hms(s) for s in (0.5, 1, 90, 3600, 86400 * 7, 86400 * 400)] == [
        "500ms", "1s", "1m", "1h", "7d", "1y",
    ]  # fmt: skip


def test_conditional_all_as_the_plugins_tests() -> None:
    sql = "$__conditionalAll(foo, $fieldVal)"
    picked = Variables({"fieldVal": ["'val1', 'val2'"]})
    assert expand(sql, PLUGIN, picked) == "foo"
    assert expand(sql, PLUGIN, Variables({"fieldVal": ["$__all"]})) == "1=1"
    assert expand(sql, PLUGIN, Variables({"fieldVal": ""})) == "1=1"
    # The docs' warning: a format in the second argument hides the variable, so the
    # condition stays even for "All" (and then needs the variable's options).
    formatted = "$__conditionalAll(s IN (${service:sqlstring}), ${service:sqlstring})"
    everything = Variables(options={"service": ["a", "b"]})
    assert expand(formatted, PLUGIN, everything) == "s IN ('a','b')"


def test_conditional_all_runs_before_variables_so_any_value_is_safe() -> None:
    sql = "$__conditionalAll(s IN (${service:sqlstring}), $service)"
    assert expand(sql, PLUGIN, Variables({"service": ["a)"]})) == "s IN ('a)')"
    assert expand(sql, PLUGIN, Variables({"service": ["x", "(y"]})) == "s IN ('x','(y')"


def test_sqlstring_escapes_as_grafana_not_as_clickhouse() -> None:
    """scenes' sqlstring doubles ' and backslashes " but leaves \\ alone, so `a\\b` reaches
    ClickHouse as 'a\\b' (a, backspace): the panel filters on what Grafana sends."""
    sql = "$__conditionalAll(s IN (${service:sqlstring}), $service)"
    picked = Variables({"service": ["a\\b", "it's", 'say "hi"']})
    assert expand(sql, PLUGIN, picked) == "s IN ('a\\b','it''s','say \\\"hi\\\"')"
    # Without a format the plugin's own: quoted, nothing escaped; a textbox as it is.
    assert expand("$service", PLUGIN, Variables({"service": ["a", "b'"]})) == "'a','b''"
    assert expand("${trace_id}", PLUGIN, Variables({"trace_id": "ab"})) == "ab"


def test_the_replacement_is_read_as_javascript_reads_it() -> None:
    """applyConditionalAll uses String.replace, whose replacement turns $$ into $."""
    assert expand(
        "$__conditionalAll(x = '$$', $service)", PLUGIN, Variables({"service": ["a"]})
    ) == ("x = '$'")


def test_every_panel_expands_for_all_and_for_picked_values() -> None:
    picked = Variables(
        {"service": ["crud-api"], "endpoint": ["/checkout"], "region": ["eu-west"], "trace_id": "0"}
    )
    hour = TimeRange(FROM, FROM + timedelta(hours=1))
    for board in DASHBOARDS.values():
        for panel in board.panels:
            for variables in (Variables({"trace_id": "0"}), picked):
                sql = expand(panel.sql, hour, variables)
                assert "$" not in sql.replace("'$'", ""), (panel.title, sql)
