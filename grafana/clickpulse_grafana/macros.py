"""Expands panel SQL exactly as the grafana-clickhouse-datasource plugin (v4.19+) does, so the
same SQL runs in tests, the offline report and the benchmarks.

F and T are the range's start and end in Unix seconds, I the interval in seconds
(max(1, intervalMs / 1000), intervalMs rounded as Grafana rounds it). Template variables are
expanded first (as Grafana does), then the macros (as the plugin does, server-side)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

ALL = "$__all"


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime
    max_data_points: int = 300

    @property
    def from_s(self) -> int:
        return int(self.start.timestamp())

    @property
    def to_s(self) -> int:
        return int(self.end.timestamp())

    @property
    def interval_s(self) -> int:
        """Grafana's auto interval: range / max data points, rounded to Grafana's ladder of
        "nice" intervals, in whole seconds (at least one), as the plugin passes it on."""
        raw_ms = (self.to_s - self.from_s) * 1000 / self.max_data_points
        return max(1, _nice_interval_ms(raw_ms) // 1000)


# Grafana's interval rounding (@grafana/data rangeutil.roundInterval): below each bound (ms),
# the interval becomes the value next to it.
_NICE_INTERVALS_MS = [
    (10, 1),
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (750_000, 600_000),
    (1_050_000, 900_000),
    (1_500_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
]


def _nice_interval_ms(interval_ms: float) -> int:
    for bound, nice in _NICE_INTERVALS_MS:
        if interval_ms < bound:
            return nice
    return 31_536_000_000


@dataclass(frozen=True)
class Variables:
    """Selected values per template variable; ALL (or nothing) means "All"."""

    values: Mapping[str, Sequence[str] | str] = field(default_factory=dict)

    def selected(self, name: str) -> list[str] | None:
        value = self.values.get(name, ALL)
        items = [value] if isinstance(value, str) else list(value)
        return None if not items or ALL in items else items


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _split_args(text: str, start: int) -> tuple[list[str], int]:
    """Arguments of a macro call whose '(' is at `start`; returns them and the index after ')'."""
    depth, i = 0, start + 1
    args: list[str] = []
    current: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                args.append("".join(current).strip())
                return args, i + 1
            depth -= 1
        elif ch == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    raise ValueError(f"unbalanced parentheses in macro call at {start}: {text[start : start + 40]}")


def _expand_variables(sql: str, variables: Variables) -> tuple[str, dict[str, bool]]:
    """`${name:sqlstring}`, `${name}` and `$name`; records which variables are "All" for
    `$__conditionalAll`, which sees the variable before interpolation."""
    all_selected: dict[str, bool] = {}

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        fmt = match.group("format")
        if name.startswith("__"):
            return match.group(0)
        chosen = variables.selected(name)
        all_selected[name] = chosen is None
        if chosen is None:
            return "$__all_" + name
        if fmt == "sqlstring":
            return ",".join(_quote(v) for v in chosen)
        return ",".join(chosen)

    pattern = re.compile(r"\$\{(?P<braced>\w+)(?::(?P<format>\w+))?\}|\$(?P<bare>[A-Za-z]\w*)")
    return pattern.sub(replace, sql), all_selected


def expand(sql: str, time_range: TimeRange, variables: Variables | None = None) -> str:
    sql, _ = _expand_variables(sql, variables or Variables())
    f, t, i = time_range.from_s, time_range.to_s, time_range.interval_s
    out: list[str] = []
    pos = 0
    call = re.compile(
        r"\$__(timeFilter_ms|timeFilter|timeInterval_ms|timeInterval|conditionalAll)\("
    )
    while (match := call.search(sql, pos)) is not None:
        out.append(sql[pos : match.start()])
        args, end = _split_args(sql, match.end() - 1)
        name = match.group(1)
        if name == "timeFilter":
            out.append(f"{args[0]} >= toDateTime({f}) AND {args[0]} <= toDateTime({t})")
        elif name == "timeFilter_ms":
            out.append(
                f"{args[0]} >= fromUnixTimestamp64Milli({f * 1000}) AND "
                f"{args[0]} <= fromUnixTimestamp64Milli({t * 1000})"
            )
        elif name == "timeInterval":
            out.append(f"toStartOfInterval(toDateTime({args[0]}), INTERVAL {i} second)")
        elif name == "timeInterval_ms":
            out.append(
                f"toStartOfInterval(toDateTime64({args[0]}, 3), INTERVAL {i * 1000} millisecond)"
            )
        else:  # conditionalAll: the whole condition goes when the variable is "All"
            out.append("1=1" if "$__all_" in args[1] else args[0])
        pos = end
    out.append(sql[pos:])
    expanded = "".join(out)
    expanded = (
        expanded.replace("$__fromTime", f"toDateTime({f})")
        .replace("$__toTime", f"toDateTime({t})")
        .replace("$__interval_s", str(i))
    )
    if "$__all_" in expanded:
        raise ValueError("an 'All' variable is used outside $__conditionalAll: " + expanded[:200])
    if "$__" in expanded:
        raise ValueError("unknown macro left in: " + expanded[:200])
    return expanded
