"""One Vega-Lite chart per panel, drawn from what Grafana would show (display.View): the same
slices, bars, series and cells, names, units and colours, at the panel's size on Grafana's
grid, on Grafana's dark theme."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import altair as alt
import pandas as pd

from clickpulse_grafana.display import View
from clickpulse_grafana.value_format import UNITS

# Grafana's grid: 24 columns; a height unit is 30 px (react-grid-layout rowHeight) plus 8 of
# margin. 64 px per column is a 1536 px wide dashboard.
COLUMN_PX = 64
ROW_PX = 38
CHROME_PX = 44  # the panel's title and padding
BACKGROUND = "#111217"
PANEL = "#181b1f"
TEXT = "#ccccdc"
GRID = "#2c3235"


# The steps a time axis of uPlot (Grafana's time series panel) may tick by, in seconds (uPlot's
# `timeIncrs`, src/opts.js, up to weeks): no 2-minute step, say, between 1 and 5.
TIME_STEPS_S = (
    *(1, 5, 10, 15, 30),
    *(m * 60 for m in (1, 5, 10, 15, 30)),
    *(h * 3600 for h in (1, 2, 3, 4, 6, 8, 12)),
    *(d * 86400 for d in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15)),
)
# Grafana's x axis keeps a tick's label width plus 18 px between ticks (UPlotAxisBuilder's
# calculateSpace); its axis font (12 px) is ~6.5 px a character.
LABEL_GAP_PX = 18
CHAR_PX = 6.5


def time_axis(span: tuple[datetime, datetime], width: int, zone: str) -> dict[str, Any]:
    """The ticks of a time axis as Grafana 11.6 lays them out at `width` px: the first of
    uPlot's steps that leaves each label its room, on the zone's round times, labelled in that
    step's unit (systemDateFormats.interval), in Vega's notation, 24-hour clock. Left to
    itself, Vega ticked the full-width panel of an hour every minute, and the labels ran
    together; the ticks are listed because this Vega fails on a `tickCount` of an interval."""
    seconds = (span[1] - span[0]).total_seconds()

    def fits(step: int) -> bool:
        label = datetime(2026, 12, 31, 23, 59, 59).strftime(_step_format(step))
        return step * max(width, 1) >= seconds * (len(label) * CHAR_PX + LABEL_GAP_PX)

    step = next((s for s in TIME_STEPS_S if fits(s)), TIME_STEPS_S[-1])
    start, end = (t.astimezone(ZoneInfo(zone)).replace(tzinfo=None) for t in span)
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    tick = midnight + timedelta(seconds=math.ceil((start - midnight).total_seconds() / step) * step)
    ticks = []
    while tick <= end:
        ticks.append(tick.isoformat())
        tick += timedelta(seconds=step)
    return {"format": _step_format(step), "values": ticks}


def _step_format(step: float) -> str:
    if step < 60:
        return "%H:%M:%S"
    if step < 3600:
        return "%H:%M"
    if step < 86400:
        return "%m/%d %H:%M"
    return "%m/%d"


UNIT_TITLES = {
    "reqps": "req/s",
    "percentunit": "%",
    "bytes": "bytes",
    "ms": "ms",
    "currencyUSD": "$",
    "short": "",
    "none": "",
}


def size(panel: dict[str, Any]) -> tuple[int, int]:
    grid = panel["gridPos"]
    return grid["w"] * COLUMN_PX - 24, grid["h"] * ROW_PX - CHROME_PX


def _title(panel: dict[str, Any]) -> alt.TitleParams:
    return alt.TitleParams(panel["title"], anchor="start", color=TEXT, fontSize=13)


def _legend(values: list[str], colors: list[str], title: str | None = None) -> Any:
    return alt.Scale(domain=values, range=colors)


def _axis_format(unit: str | None) -> dict[str, Any]:
    """Axis labels as Grafana writes them: the unit's formatter on each tick."""
    if unit == "percentunit":
        return {"format": ".0%"}
    if unit == "bytes":
        # IEC steps as Grafana's `bytes`: a disk in GiB, a process in MiB.
        return {
            "labelExpr": "datum.value >= 1073741824"
            " ? format(datum.value / 1073741824, '.0f') + ' GiB'"
            " : format(datum.value / 1048576, '.0f') + ' MiB'"
        }
    if unit == "currencyUSD":
        return {"format": "$~s"}
    # SI prefixes from 1,000 up (1.5k, as Grafana's "short"), plain decimals below: "~s" alone
    # writes 0.16 as "160m", which reads as 160 million.
    return {
        "labelExpr": "abs(datum.value) >= 1000 ? format(datum.value, '~s')"
        " : format(datum.value, '~r')"
    }


def timeseries(
    panel: dict[str, Any], view: View, zone: str, span: tuple[datetime, datetime]
) -> Any:
    """The x axis is the dashboard's whole range, as in Grafana, not just the data's."""
    width, height = size(panel)
    rows = [
        {"time": t, "series": s.name, "value": v}
        for s in view.series
        for t, v in zip(s.times, s.values, strict=True)
    ]
    frame = pd.DataFrame(rows)
    frame["time"] = pd.to_datetime(frame["time"], utc=True).dt.tz_convert(zone).dt.tz_localize(None)
    unit = view.series[0].unit if view.series else None
    names = [s.name for s in view.series]
    return (
        alt.Chart(frame, title=_title(panel), width=width, height=height - 24)
        # Clipped to the range, as Grafana draws it: the first bucket starts before the
        # range does (a filled one always), and its point would sit left of the y axis.
        .mark_line(point=alt.OverlayMarkDef(size=12, clip=True), strokeWidth=1.5, clip=True)
        .encode(
            x=alt.X(
                "time:T",
                title=f"time ({zone})",
                axis=alt.Axis(**time_axis(span, width, zone)),
                scale=alt.Scale(domain=[_local(t, zone) for t in span]),
            ),
            y=alt.Y(
                "value:Q",
                title=UNIT_TITLES.get(unit or "", unit),
                axis=alt.Axis(**_axis_format(unit)),
            ),
            color=alt.Color(
                "series:N",
                scale=_legend(names, [s.color for s in view.series]),
                legend=alt.Legend(orient="bottom", title=None),
            ),
        )
    )


def piechart(panel: dict[str, Any], view: View) -> Any:
    width, height = size(panel)
    total = sum(item.value or 0 for item in view.items) or 1
    frame = pd.DataFrame(
        {
            "name": [i.name for i in view.items],
            "value": [i.value for i in view.items],
            "label": [
                f"{i.name}  {i.text}  {100 * (i.value or 0) / total:.0f}%" for i in view.items
            ],
        }
    )
    diameter = min(height, width // 2)
    return (
        alt.Chart(frame, title=_title(panel), width=width - 8, height=height)
        .mark_arc(outerRadius=diameter // 2, stroke=PANEL)
        .encode(
            theta=alt.Theta("value:Q", stack=True),
            color=alt.Color(
                "label:N",
                sort=None,
                scale=_legend(list(frame["label"]), [i.color for i in view.items]),
                legend=alt.Legend(orient="right", title=None, labelLimit=260),
            ),
            order=alt.Order("value:Q", sort="descending"),
        )
    )


def bargauge(panel: dict[str, Any], view: View) -> Any:
    width, height = size(panel)
    frame = pd.DataFrame(
        {
            "name": [i.name for i in view.items],
            "value": [i.value for i in view.items],
            "text": [i.text for i in view.items],
            "color": [i.color for i in view.items],
        }
    )
    base = alt.Chart(frame, title=_title(panel), width=width - 200, height=height).encode(
        y=alt.Y("name:N", sort=None, title=None, axis=alt.Axis(labelLimit=180)),
    )
    bars = base.mark_bar().encode(
        x=alt.X("value:Q", title=None, axis=None),
        color=alt.Color("color:N", scale=None, legend=None),
    )
    texts = base.mark_text(align="left", dx=4, color=TEXT).encode(x=alt.X("value:Q"), text="text:N")
    return bars + texts


def barchart(panel: dict[str, Any], view: View) -> Any:
    width, height = size(panel)
    rows = [
        {"category": c, "series": s.name, "value": v}
        for s in view.series
        for c, v in zip(view.categories, s.values, strict=True)
    ]
    return (
        alt.Chart(pd.DataFrame(rows), title=_title(panel), width=width, height=height - 30)
        .mark_bar()
        .encode(
            x=alt.X("category:N", sort=None, title=None, axis=alt.Axis(labelAngle=0)),
            xOffset="series:N",
            y=alt.Y("value:Q", title=None),
            color=alt.Color(
                "series:N",
                scale=_legend([s.name for s in view.series], [s.color for s in view.series]),
                legend=alt.Legend(orient="bottom", title=None),
            ),
        )
    )


def stat(panel: dict[str, Any], view: View) -> Any:
    width, height = size(panel)
    text = view.items[0].text if view.items else "No data"
    return (
        alt.Chart(pd.DataFrame({"v": [text]}), title=_title(panel), width=width, height=height)
        .mark_text(fontSize=min(48, height // 2), fontWeight="bold", color=TEXT)
        .encode(text="v:N")
    )


def table(panel: dict[str, Any], view: View) -> Any:
    """Header, then as many rows as the panel's height holds, in Grafana's column order;
    cells of a coloured column on their threshold colour."""
    width, height = size(panel)
    fits = max(1, height // 22 - 1)
    column_width = width / max(1, len(view.columns))
    cells = []
    for x, column in enumerate(view.columns):
        cells.append({"x": x, "y": 0, "text": column.header, "bg": None, "bold": True})
        for y, cell in enumerate(column.texts[:fits], start=1):
            background = column.backgrounds[y - 1] if column.backgrounds else None
            shown = (
                cell if len(cell) <= column_width // 7 else cell[: int(column_width // 7) - 1] + "…"
            )
            cells.append({"x": x, "y": y, "text": shown, "bg": background, "bold": False})
    frame = pd.DataFrame(cells)
    frame["x0"] = frame["x"] * column_width
    frame["x1"] = frame["x0"] + column_width - 2
    frame["y0"] = frame["y"] * 22
    frame["y1"] = frame["y0"] + 21
    scale_x = alt.Scale(domain=[0, width])
    scale_y = alt.Scale(domain=[0, max(height, 22)], reverse=True)
    base = alt.Chart(frame, title=_title(panel), width=width, height=height)
    backgrounds = (
        base.transform_filter("datum.bg != null")
        .mark_rect()
        .encode(
            x=alt.X("x0:Q", scale=scale_x, axis=None),
            x2="x1:Q",
            y=alt.Y("y0:Q", scale=scale_y, axis=None),
            y2="y1:Q",
            color=alt.Color("bg:N", scale=None, legend=None),
        )
    )

    def text(bold: bool) -> Any:
        return (
            base.transform_filter("datum.bold" if bold else "!datum.bold")
            .mark_text(
                align="left",
                baseline="middle",
                dx=4,
                dy=11,
                fontSize=11,
                fontWeight="bold" if bold else "normal",
            )
            .encode(
                x=alt.X("x0:Q", scale=scale_x, axis=None),
                y=alt.Y("y0:Q", scale=scale_y, axis=None),
                text="text:N",
                color=alt.condition("datum.bg != null", alt.value("#000000"), alt.value(TEXT)),
            )
        )

    return backgrounds + text(True) + text(False)


def empty(panel: dict[str, Any], message: str) -> Any:
    width, height = size(panel)
    return (
        alt.Chart(pd.DataFrame({"v": [message]}), title=_title(panel), width=width, height=height)
        .mark_text(color="#8e8e8e")
        .encode(text="v:N")
    )


def _local(moment: datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None).isoformat()


def chart(panel: dict[str, Any], view: View, zone: str, span: tuple[datetime, datetime]) -> Any:
    kind = panel["type"]
    if kind == "timeseries":
        return timeseries(panel, view, zone, span)
    if kind == "piechart":
        return piechart(panel, view)
    if kind == "bargauge":
        return bargauge(panel, view)
    if kind == "barchart":
        return barchart(panel, view)
    if kind == "stat":
        return stat(panel, view)
    return table(panel, view)


def themed(spec: Any) -> Any:
    """Grafana's dark theme around a chart or a whole dashboard."""
    return (
        spec.configure(background=BACKGROUND, font="Inter, Helvetica, Arial, sans-serif")
        .configure_view(fill=PANEL, stroke=GRID)
        .configure_axis(labelColor=TEXT, titleColor=TEXT, gridColor=GRID, domainColor=GRID)
        .configure_legend(labelColor=TEXT, titleColor=TEXT)
        .configure_title(color=TEXT)
    )


__all__ = ["UNITS", "chart", "empty", "size", "themed"]
