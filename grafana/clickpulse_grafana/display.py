"""What Grafana 11.6 shows for a panel, given its JSON and the rows its query returned: how
many slices, bars, series or rows, named how, with which unit and colour. The offline report
draws from this, so it is never kinder than Grafana.

Sources: the plugin's frames (sqlds: a "time series" query whose frame has string columns is
turned wide, one series per label set, by data.LongToWide); @grafana/data 11.6
field/fieldDisplay getFieldDisplayValues (pie chart, bar gauge, stat: `reduceOptions.values`
true shows every row, up to `limit` (25 by default); false reduces each numeric field to one
value by `calcs`, and a field that no row names keeps the field's name); field/fieldState
calculateFieldDisplayName (a series is named "<field> <label value>" when every series has
the same single label); fieldOverrides (byName overrides apply per column)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from clickpulse_grafana.value_format import (
    color,
    format_value,
    palette_color,
    threshold_color,
)

FieldType = Literal["time", "number", "string"]
Steps = tuple[tuple[float | None, str], ...]


@dataclass(frozen=True)
class FieldConfig:
    unit: str | None = None
    header: str | None = None
    steps: Steps = ((None, "green"), (80, "red"))
    color_mode: str = "thresholds"
    fixed_color: str | None = None
    coloured_cells: bool = False
    has_link: bool = False


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    values: list[Any]
    labels: Mapping[str, str] = field(default_factory=dict)
    config: FieldConfig = FieldConfig()


@dataclass(frozen=True)
class Item:
    """One slice, bar or big value."""

    name: str
    value: float | None
    text: str
    color: str


@dataclass(frozen=True)
class Series:
    name: str
    unit: str | None
    times: list[datetime]
    values: list[float | None]
    color: str


@dataclass(frozen=True)
class Column:
    name: str
    header: str
    unit: str | None
    texts: list[str]
    # Cell backgrounds when the column is coloured by its thresholds, else None.
    backgrounds: list[str] | None
    has_link: bool


@dataclass(frozen=True)
class View:
    panel_type: str
    items: list[Item] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)
    # A bar chart's categories (its x field's values).
    categories: list[str] = field(default_factory=list)
    rows: int = 0


def _type_of(values: Sequence[Any]) -> FieldType:
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, datetime):
        return "time"
    if isinstance(sample, int | float | Decimal) and not isinstance(sample, bool):
        return "number"
    return "string"


def _steps(thresholds: Mapping[str, Any]) -> Steps:
    return tuple((step.get("value"), step["color"]) for step in thresholds["steps"])


def _config(base: FieldConfig, properties: Sequence[Mapping[str, Any]]) -> FieldConfig:
    for prop in properties:
        pid, value = prop["id"], prop["value"]
        if pid == "unit":
            base = replace(base, unit=value)
        elif pid == "displayName":
            base = replace(base, header=value)
        elif pid == "thresholds":
            base = replace(base, steps=_steps(value))
        elif pid == "custom.cellOptions":
            base = replace(base, coloured_cells=value.get("type") == "color-background")
        elif pid == "links":
            base = replace(base, has_link=bool(value))
        elif pid == "color":
            base = replace(base, color_mode=value["mode"], fixed_color=value.get("fixedColor"))
        else:
            raise ValueError(f"override property {pid!r} is not modelled")
    return base


def field_configs(panel: Mapping[str, Any], names: Sequence[str]) -> dict[str, FieldConfig]:
    """Each column's config: the panel's defaults, then its byName overrides in order."""
    defaults = panel["fieldConfig"]["defaults"]
    base = FieldConfig(
        unit=defaults.get("unit"),
        steps=_steps(defaults["thresholds"]) if "thresholds" in defaults else FieldConfig.steps,
        color_mode=defaults.get("color", {}).get("mode", "thresholds"),
        fixed_color=defaults.get("color", {}).get("fixedColor"),
        coloured_cells=defaults.get("custom", {}).get("cellOptions", {}).get("type")
        == "color-background",
        has_link=bool(defaults.get("links")),
    )
    configs = dict.fromkeys(names, base)
    for override in panel["fieldConfig"]["overrides"]:
        matcher = override["matcher"]
        if matcher["id"] != "byName":
            raise ValueError(f"matcher {matcher['id']!r} is not modelled")
        if matcher["options"] in configs:
            configs[matcher["options"]] = _config(
                configs[matcher["options"]], override["properties"]
            )
    return configs


def frame(
    panel: Mapping[str, Any], columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[Field]:
    """The plugin's frame for the rows, turned wide for a "time series" query."""
    configs = field_configs(panel, columns)
    fields = []
    for index, name in enumerate(columns):
        values = [row[index] for row in rows]
        kind = _type_of(values)
        if kind == "number":
            values = [None if v is None else float(v) for v in values]
        fields.append(Field(name, kind, values, config=configs[name]))
    is_timeseries = panel["targets"][0]["format"] == 0
    if is_timeseries and any(f.type == "string" for f in fields):
        return long_to_wide(fields)
    return fields


def long_to_wide(fields: Sequence[Field]) -> list[Field]:
    """data.LongToWide: one time field; per numeric field, one field per set of string values
    (its labels), in the order the sets first appear; missing points are null."""
    time = next(f for f in fields if f.type == "time")
    strings = [f for f in fields if f.type == "string"]
    numbers = [f for f in fields if f.type == "number"]
    times: list[datetime] = []
    for t in time.values:
        if t not in times:
            times.append(t)
    label_sets: list[tuple[str, ...]] = []
    for row in range(len(time.values)):
        key = tuple(str(s.values[row]) for s in strings)
        if key not in label_sets:
            label_sets.append(key)
    wide = [Field(time.name, "time", times, config=time.config)]
    for number in numbers:
        for key in label_sets:
            by_time = {
                time.values[row]: number.values[row]
                for row in range(len(time.values))
                if tuple(str(s.values[row]) for s in strings) == key
            }
            labels = {s.name: value for s, value in zip(strings, key, strict=True)}
            wide.append(
                Field(number.name, "number", [by_time.get(t) for t in times], labels, number.config)
            )
    return wide


def display_name(target: Field, fields: Sequence[Field]) -> str:
    """calculateFieldDisplayName, for one frame."""
    if target.config.header:
        return target.config.header
    parts = [target.name] if target.name and target.name != "Value" else []
    if target.labels:
        keys = {key for f in fields for key in f.labels}
        if len(keys) == 1:
            parts.append(target.labels[next(iter(keys))])
        else:
            parts.append("{" + ", ".join(f'{k}="{v}"' for k, v in target.labels.items()) + "}")
    return " ".join(parts) if parts else target.name


def _row_name(fields: Sequence[Field], target: Field, row: int) -> str:
    """getSmartDisplayNameForRow: the row's strings, plus the field's name when other numeric
    fields share the row."""
    parts = [str(f.values[row]) for f in fields if f is not target and f.type == "string"]
    parts = [p for p in parts if p]
    others = sum(1 for f in fields if f is not target and f.type == "number")
    if others or not parts:
        parts.append(display_name(target, fields))
    return " ".join(parts)


# What a pie chart, bar gauge or stat without reduceOptions gets: the plugins' defaults
# (addStandardDataReduceOptions: values false, calcs ["lastNotNull"]).
DEFAULT_REDUCE: Mapping[str, Any] = {"values": False, "calcs": ["lastNotNull"], "fields": ""}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


Reducer = Callable[[list[Any]], Any]
REDUCERS: dict[str, Reducer] = {
    "lastNotNull": lambda vs: next((v for v in reversed(vs) if v is not None), None),
    "last": lambda vs: vs[-1] if vs else None,
    "firstNotNull": lambda vs: next((v for v in vs if v is not None), None),
    "first": lambda vs: vs[0] if vs else None,
    "sum": lambda vs: sum(v for v in vs if v is not None),
    "max": lambda vs: max((v for v in vs if v is not None), default=None),
    "min": lambda vs: min((v for v in vs if v is not None), default=None),
    "mean": lambda vs: _mean([v for v in vs if v is not None]),
    "count": lambda vs: float(len(vs)),
}


def _item_color(config: FieldConfig, value: float | None, index: int) -> str:
    if config.color_mode == "fixed":
        return color(config.fixed_color or "text")
    if config.color_mode.startswith("palette"):
        return palette_color(index)
    return threshold_color(value, config.steps)


def field_display_values(
    options: Mapping[str, Any], fields: Sequence[Field], timezone: ZoneInfo
) -> list[Item]:
    """getFieldDisplayValues: one item per row (values) or per numeric field and calc."""
    reduce = options.get("reduceOptions", DEFAULT_REDUCE)
    calcs = reduce.get("calcs") or ["last"]
    limit = reduce.get("limit") or 25
    pattern = reduce.get("fields") or ""
    items: list[Item] = []
    for target in fields:
        name = display_name(target, fields)
        if pattern:
            if not re.search(pattern, name):
                continue
        elif target.type != "number":
            continue
        if reduce.get("values"):
            for row, value in enumerate(target.values):
                text = format_value(value, target.config.unit, timezone)
                item_color = _item_color(target.config, value, len(items))
                items.append(Item(_row_name(fields, target, row), value, text, item_color))
                if len(items) >= limit:
                    return items
        else:
            for calc in calcs:
                if calc not in REDUCERS:
                    raise ValueError(f"calculation {calc!r} is not modelled")
                value = REDUCERS[calc](target.values)
                text = format_value(value, target.config.unit, timezone)
                items.append(Item(name, value, text, _item_color(target.config, value, len(items))))
    return items


def show(
    panel: Mapping[str, Any],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    timezone: ZoneInfo,
) -> View:
    """What a viewer sees in the panel."""
    kind = panel["type"]
    fields = frame(panel, columns, rows)
    if not rows:
        return View(kind)
    if kind in ("piechart", "bargauge", "stat"):
        return View(
            kind, items=field_display_values(panel["options"], fields, timezone), rows=len(rows)
        )
    if kind == "timeseries":
        time = next(f for f in fields if f.type == "time")
        numbers = [f for f in fields if f.type == "number"]
        series = [
            Series(display_name(f, fields), f.config.unit, time.values, f.values, palette_color(i))
            for i, f in enumerate(numbers)
        ]
        return View(kind, series=series, rows=len(rows))
    if kind == "barchart":
        x_field = next(f for f in fields if f.name == panel["options"]["xField"])
        numbers = [f for f in fields if f.type == "number" and f is not x_field]
        categories = [str(v) for v in x_field.values]
        series = [
            Series(
                display_name(f, fields), f.config.unit, [], f.values, _item_color(f.config, None, i)
            )
            for i, f in enumerate(numbers)
        ]
        return View(kind, series=series, categories=categories, rows=len(rows))
    if kind == "table":
        table_columns = [
            Column(
                f.name,
                display_name(f, fields),
                f.config.unit,
                [format_value(v, f.config.unit, timezone) for v in f.values],
                [threshold_color(v, f.config.steps) for v in f.values]
                if f.config.coloured_cells and f.type == "number"
                else None,
                f.config.has_link,
            )
            for f in fields
        ]
        return View(kind, columns=table_columns, rows=len(rows))
    raise ValueError(f"panel type {kind!r} is not modelled")
