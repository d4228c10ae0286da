"""How Grafana 11.6 writes a number with a unit and picks a colour (@grafana/data 11.6:
valueFormats/valueFormats, categories, dateTimeFormatters, symbolFormatters,
arithmeticFormatters; themes/createVisualizationColors for the dark theme, Grafana's default)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

Formatter = Callable[[float], str]


def decimals_for(value: float) -> int:
    """getDecimalsForValue."""
    if value == 0 or not math.isfinite(value):
        return 0
    dec = -math.floor(math.log10(abs(value))) + 1
    if abs(value) / 10 ** (-dec) > 2.25:
        dec += 1
    if value % 1 == 0:
        dec = 0
    return max(0, dec)


def to_fixed(value: float) -> str:
    """toFixed with automatic decimals: rounded to them, trailing zeros dropped as JavaScript's
    String(number) drops them, then padded back to the decimals."""
    decimals = decimals_for(value)
    rounded = round(value, decimals)
    text = f"{rounded:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    precision = len(text) - text.index(".") - 1 if "." in text else 0
    if precision < decimals:
        text = (text if precision else text + ".") + "0" * (decimals - precision)
    return text


def _scaled(factor: float, suffixes: Sequence[str], offset: int = 0) -> Formatter:
    """scaledUnits: the largest suffix the value reaches."""

    def formatter(value: float) -> str:
        index = 0 if value == 0 else math.floor(math.log(abs(value), factor))
        suffix = suffixes[max(0, min(offset + index, len(suffixes) - 1))]
        scale = max(-offset, min(index, len(suffixes) - offset - 1))
        return to_fixed(value / factor**scale) + suffix

    return formatter


def _milliseconds(value: float) -> str:
    """toMilliSeconds (plural " mins", " hours" as appendPluralIf)."""
    for limit, divisor, unit in (
        (1e3, 1, " ms"),
        (6e4, 1e3, " s"),
        (36e5, 6e4, " min"),
        (864e5, 36e5, " hour"),
        (31536e6, 864e5, " day"),
    ):
        if abs(value) < limit:
            scaled = value / divisor
            plural = "s" if unit not in (" ms", " s") and abs(scaled) > 1 else ""
            return to_fixed(scaled) + unit + plural
    return to_fixed(value / 31536e6) + " year" + ("s" if abs(value / 31536e6) > 1 else "")


_COUNT = ["", " K", " M", " B", " T"]
_SHORT = ["", " K", " Mil", " Bil", " Tri", " Quadr", " Quint", " Sext", " Sept"]
_BYTES = [" B", " KiB", " MiB", " GiB", " TiB", " PiB", " EiB", " ZiB", " YiB"]


def _currency(symbol: str) -> Formatter:
    scale = _scaled(1e3, [s.strip() for s in _COUNT])
    return lambda value: ("-" if value < 0 else "") + symbol + scale(abs(value))


UNITS: dict[str, Formatter] = {
    "none": to_fixed,
    "short": _scaled(1e3, _SHORT),
    "ms": _milliseconds,
    "reqps": lambda v: _scaled(1e3, [s.strip() for s in _COUNT])(v) + " req/s",
    "percentunit": lambda v: to_fixed(100 * v) + "%",
    "bytes": _scaled(1024, _BYTES),
    "currencyUSD": _currency("$"),
}


def format_value(value: object, unit: str | None, timezone: ZoneInfo) -> str:
    """A cell or value as Grafana writes it: numbers with the unit, times as
    YYYY-MM-DD HH:mm:ss (24-hour) in the dashboard's zone, anything else as text."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(timezone).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            number = float(str(value)) if not isinstance(value, str) else None
        except ValueError:
            number = None
        if number is None:
            return str(value)
        value = number
    formatter = UNITS.get(unit or "none")
    if formatter is None:
        raise ValueError(f"unit {unit!r} is not modelled ({sorted(UNITS)})")
    return formatter(float(value))


# The dark theme's named colours (the primary shade of each hue and the classic palette's).
NAMED_COLORS = {
    "green": "#73BF69",
    "dark-green": "#37872D",
    "yellow": "#FADE2A",
    "semi-dark-yellow": "#F2CC0C",
    "red": "#F2495C",
    "orange": "#FF9830",
    "semi-dark-orange": "#FF780A",
    "blue": "#5794F2",
    "light-blue": "#8AB8FF",
    "purple": "#B877D9",
    "text": "#CCCCDC",
}
# getClassicPalette: the colours series take in turn (palette-classic).
CLASSIC_PALETTE = [
    "green",
    "semi-dark-yellow",
    "light-blue",
    "semi-dark-orange",
    "red",
    "blue",
    "purple",
    "#705DA0",
    "dark-green",
    "yellow",
    "#447EBC",
    "#C15C17",
]


def color(name: str) -> str:
    return NAMED_COLORS.get(name, name)


def palette_color(index: int) -> str:
    return color(CLASSIC_PALETTE[index % len(CLASSIC_PALETTE)])


def threshold_color(value: float | None, steps: Sequence[tuple[float | None, str]]) -> str:
    """getActiveThreshold: the last step whose bound the value reaches."""
    chosen = steps[0][1]
    for bound, name in steps:
        if bound is None or (value is not None and value >= bound):
            chosen = name
    return color(chosen)
