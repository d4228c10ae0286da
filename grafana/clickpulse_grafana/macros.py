"""Expands panel SQL as Grafana 11.6 and grafana-clickhouse-datasource v4.20 do, so the same
SQL runs in the tests, the offline report and the benchmarks.

Order (the plugin's): in the browser `$__conditionalAll` on the raw text, then Grafana's
variables (variables.py); in the plugin's backend the macros (pkg/macros/macros.go on
grafana/macropro v1.0.1): comments blanked, every `$__name` read greedily (so `$__interval_s`
is never `$__interval`), macros nested in another's arguments expanded first. The plugin leaves
a macro it does not know in the SQL for ClickHouse to fail on; this raises instead."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from clickpulse_grafana.time_range import TimeRange
from clickpulse_grafana.variables import Variables, apply_conditional_all, interpolate

__all__ = ["MACROS", "TimeRange", "Variables", "expand", "expand_backend"]

Handler = Callable[[TimeRange, list[str]], str]


def _datetime(seconds: int) -> str:
    return f"toDateTime({seconds})"


def _datetime64(milliseconds: int) -> str:
    return f"fromUnixTimestamp64Milli({milliseconds})"


def _date(milliseconds: int) -> str:
    # The backend's times are UTC (Grafana's container runs in UTC).
    return f"toDate('{datetime.fromtimestamp(milliseconds / 1000, UTC):%Y-%m-%d}')"


def _arity(name: str, want: int, args: list[str]) -> None:
    if len(args) != want:
        raise ValueError(f"$__{name} expected {want} argument(s), received {len(args)}")


def _range_filter(low: str, high: str) -> Callable[[str], str]:
    return lambda column: f"{column} >= {low} AND {column} <= {high}"


def _time_filter(r: TimeRange, args: list[str]) -> str:
    _arity("timeFilter", 1, args)
    return _range_filter(_datetime(r.from_s), _datetime(r.to_s))(args[0])


def _time_filter_ms(r: TimeRange, args: list[str]) -> str:
    _arity("timeFilter_ms", 1, args)
    return _range_filter(_datetime64(r.from_ms), _datetime64(r.to_ms))(args[0])


def _date_filter(r: TimeRange, args: list[str]) -> str:
    _arity("dateFilter", 1, args)
    return _range_filter(_date(r.from_ms), _date(r.to_ms))(args[0])


def _date_time_filter(r: TimeRange, args: list[str]) -> str:
    _arity("dateTimeFilter", 2, args)
    dates = _range_filter(_date(r.from_ms), _date(r.to_ms))(args[0])
    times = _range_filter(_datetime(r.from_s), _datetime(r.to_s))(args[1])
    return f"({dates}) AND ({times})"


def _time_interval(r: TimeRange, args: list[str]) -> str:
    _arity("timeInterval", 1, args)
    return f"toStartOfInterval(toDateTime({args[0]}), INTERVAL {r.interval_s} second)"


def _time_interval_ms(r: TimeRange, args: list[str]) -> str:
    _arity("timeInterval_ms", 1, args)
    # max(intervalMs, 1): 500 ms stays 500 ms.
    milliseconds = max(r.interval_ms, 1)
    return f"toStartOfInterval(toDateTime64({args[0]}, 3), INTERVAL {milliseconds} millisecond)"


def _time_from(r: TimeRange, args: list[str]) -> str:
    _arity("timeFrom", 1, args)
    return f"{args[0]} >= {_datetime(r.from_s)}"


def _time_to(r: TimeRange, args: list[str]) -> str:
    _arity("timeTo", 1, args)
    return f"{args[0]} <= {_datetime(r.to_s)}"


_GO_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_GO_DURATION = re.compile(r"([+-]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Go's time.ParseDuration, in seconds ("5m", "1h30m", "1.5h", "300ms")."""
    if text == "0":
        return 0.0
    match = _GO_DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f'time: invalid duration "{text}"')
    nanoseconds = sum(float(number) * _GO_UNITS_NS[unit] for number, unit in _GO_PART.findall(text))
    return (-nanoseconds if match.group(1) == "-" else nanoseconds) / 1e9


def _time_group(_: TimeRange, args: list[str]) -> str:
    _arity("timeGroup", 2, args)
    period = args[1].strip().strip("'\"")
    try:
        seconds = round(parse_go_duration(period))
    except ValueError as exc:
        raise ValueError(f"$__timeGroup: invalid interval {period!r}: {exc}") from None
    if seconds <= 0:
        raise ValueError(f"$__timeGroup: interval must be positive, got {period!r}")
    return f"toStartOfInterval(toDateTime({args[0].strip()}), INTERVAL {seconds} second)"


def _no_context(name: str) -> Handler:
    """macropro's $__table and $__column read the query's table and column, which a raw SQL
    query of this plugin never has."""

    def handler(_: TimeRange, __: list[str]) -> str:
        raise ValueError(f"$__{name}: no {name} name in query context")

    return handler


def _go_duration(milliseconds: int) -> str:
    """macropro FormatDuration: the largest unit that divides the interval."""
    for unit_ms, suffix in ((3_600_000, "h"), (60_000, "m"), (1_000, "s")):
        if milliseconds % unit_ms == 0:
            return f"{milliseconds // unit_ms}{suffix}" if milliseconds else "0s"
    return f"{milliseconds}ms"


MACROS: dict[str, Handler] = {
    # The plugin's own (macros.go ClickHouseMacros), as its docs list them.
    "timeFilter": _time_filter,
    "timeFilter_ms": _time_filter_ms,
    "dateFilter": _date_filter,
    "dateTimeFilter": _date_time_filter,
    "dt": _date_time_filter,
    "fromTime": lambda r, _: _datetime(r.from_s),
    "toTime": lambda r, _: _datetime(r.to_s),
    "fromTime_ms": lambda r, _: _datetime64(r.from_ms),
    "toTime_ms": lambda r, _: _datetime64(r.to_ms),
    "interval_s": lambda r, _: str(r.interval_s),
    "timeInterval": _time_interval,
    "timeInterval_ms": _time_interval_ms,
    "timeFrom": _time_from,
    "timeTo": _time_to,
    "timeGroup": _time_group,
    # macropro's defaults that the plugin keeps. In a dashboard the browser has already
    # replaced $__interval and $__interval_ms (variables.py); these serve other callers.
    "interval": lambda r, _: _go_duration(r.interval_ms),
    "interval_ms": lambda r, _: str(r.interval_ms),
    "table": _no_context("table"),
    "column": _no_context("column"),
}

_PREFIX = "$__"


def _skip_string(text: str, start: int, backslash: bool) -> int:
    """macropro scanStringLiteral (doubled quotes) or, for comment stripping with the plugin's
    BackslashEscape style, scanStringLiteralBackslash. Returns the index after the literal."""
    quote, i = text[start], start + 1
    while i < len(text):
        if backslash and text[i] == "\\" and i + 1 < len(text):
            i += 2
            continue
        if text[i] == quote:
            if i + 1 < len(text) and text[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    return i


def strip_comments(sql: str) -> str:
    """macropro StripComments with LineComment | BlockComment | BackslashEscape: comments become
    spaces of the same length; quoted text is kept. An unclosed /* blanks the rest."""
    out, i = [], 0
    while i < len(sql):
        ch, pair = sql[i], sql[i : i + 2]
        if ch in "'\"":
            end = _skip_string(sql, i, backslash=True)
        elif pair == "--":
            end = len(sql)
            for terminator in "\n\r":
                found = sql.find(terminator, i)
                end = min(end, found) if found != -1 else end
            out.append(" " * (end - i))
            i = end
            continue
        elif pair == "/*":
            close = sql.find("*/", i + 2)
            end = len(sql) if close == -1 else close + 2
            out.append(" " * (end - i))
            i = end
            continue
        else:
            end = i + 1
        out.append(sql[i:end])
        i = end
    return "".join(out)


def _closing_paren(text: str, open_paren: int) -> int:
    """macropro findClosingParen: -1 when unbalanced (the call is then read as taking none)."""
    depth, i = 0, open_paren
    while i < len(text):
        ch = text[i]
        if ch in "'\"":
            i = _skip_string(text, i, backslash=False)
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _split_args(raw: str, macro: str) -> list[str]:
    """macropro parseArgs: commas at depth zero outside quotes; arguments trimmed."""
    raw = raw.strip()
    if not raw:
        return []
    args, depth, start, i = [], 0, 0, 0
    while i < len(raw):
        ch = raw[i]
        if ch in "'\"":
            i = _skip_string(raw, i, backslash=False)
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                raise ValueError(f"macro $__{macro}: unexpected ')' at position {i}")
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(raw[start:i].strip())
            start = i + 1
        i += 1
    if depth:
        raise ValueError(f"macro $__{macro}: unbalanced parentheses in arguments")
    args.append(raw[start:].strip())
    return args


def _expand_macros(sql: str, time_range: TimeRange, depth: int = 0) -> str:
    if depth > 128:
        raise ValueError("macro nesting exceeds 128 levels")
    out, i = [], 0
    while (found := sql.find(_PREFIX, i)) != -1:
        out.append(sql[i:found])
        name_end = found + len(_PREFIX)
        while name_end < len(sql) and (
            (sql[name_end].isascii() and sql[name_end].isalnum()) or sql[name_end] == "_"
        ):
            name_end += 1
        name = sql[found + len(_PREFIX) : name_end]
        if not name:
            out.append(_PREFIX)
            i = name_end
            continue
        handler = MACROS.get(name)
        if handler is None:
            raise ValueError(
                f"unknown macro $__{name}: the plugin would send it to ClickHouse as it is "
                f"(known: {', '.join('$__' + m for m in sorted(MACROS))}): "
                f"{sql[found : found + 80]!r}"
            )
        raw, after = "", name_end
        if after < len(sql) and sql[after] == "(":
            close = _closing_paren(sql, after)
            if close != -1:
                raw, after = sql[after + 1 : close], close + 1
        args = [
            _expand_macros(arg, time_range, depth + 1) if _PREFIX in arg else arg
            for arg in _split_args(raw, name)
        ]
        out.append(handler(time_range, args))
        i = after
    out.append(sql[i:])
    return "".join(out)


def expand_backend(sql: str, time_range: TimeRange) -> str:
    """The plugin's backend alone (macros.Interpolate), on SQL the browser has interpolated."""
    if _PREFIX not in sql:
        return sql
    return _expand_macros(strip_comments(sql), time_range)


def expand(sql: str, time_range: TimeRange, variables: Variables | None = None) -> str:
    """A panel's SQL as ClickHouse receives it from Grafana."""
    variables = variables or Variables()
    sql = apply_conditional_all(sql, variables)
    sql = interpolate(sql, variables, time_range)
    return expand_backend(sql, time_range)
