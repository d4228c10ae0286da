"""A panel and a dashboard as code, and the Grafana 11.6 JSON they become. Options per panel
type come from panel_options (Grafana's own types); a column's unit, thresholds, cell colour,
header and link are per-column overrides, so they apply to the column they mean something
for (a request count is not a duration)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from clickpulse_grafana import panel_options
from clickpulse_grafana.sql_fragments import MINUTES, SERVICE

DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "clickpulse-clickhouse"}
SCHEMA_VERSION = 41
# Fixed, so $__interval (which picks the rollup) depends on the range only, not on the panel's
# width in pixels; time_range.TimeRange assumes the same.
MAX_DATA_POINTS = 300
GRID_COLUMNS = 24

PanelType = Literal["timeseries", "table", "stat", "piechart", "barchart", "bargauge"]
Shape = Literal["timeseries", "table", "value"]
# (lower bound, colour); the first step's bound is None: from minus infinity.
Thresholds = tuple[tuple[float | None, str], ...]
# Grafana's default for every panel (the thresholds standard option): red from 80. Colours by
# thresholds where a panel does not set its own.
DEFAULT_THRESHOLDS: Thresholds = ((None, "green"), (80, "red"))


@dataclass(frozen=True, kw_only=True)
class Link:
    title: str
    url: str


@dataclass(frozen=True, kw_only=True)
class Column:
    """How one column of a table shows (a `byName` override)."""

    header: str | None = None
    unit: str | None = None
    thresholds: Thresholds | None = None
    # Colour the cell's background by the thresholds.
    coloured: bool = False
    link: Link | None = None

    def properties(self) -> list[dict[str, Any]]:
        properties: list[dict[str, Any]] = []
        if self.header:
            properties.append({"id": "displayName", "value": self.header})
        if self.unit:
            properties.append({"id": "unit", "value": self.unit})
        if self.thresholds:
            properties.append({"id": "thresholds", "value": thresholds_json(self.thresholds)})
        if self.coloured:
            properties.append(
                {"id": "custom.cellOptions", "value": panel_options.colored_background()}
            )
        if self.link:
            properties.append(
                {"id": "links", "value": [{"title": self.link.title, "url": self.link.url}]}
            )
        return properties


def thresholds_json(steps: Thresholds) -> dict[str, Any]:
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }


@dataclass(frozen=True, kw_only=True)
class Panel:
    title: str
    type: PanelType
    sql: str
    shape: Shape
    width: int = 12
    height: int = 8
    description: str = ""
    # The unit of every numeric column; `columns` overrides it per column.
    unit: str | None = None
    columns: Mapping[str, Column] = field(default_factory=dict)
    # One colour for every bar or value (bar gauges), instead of colour by thresholds.
    color: str | None = None
    # A bar chart's x axis.
    x_field: str | None = None
    uses_rollup: bool = False
    # Bounds every numeric value of the result must respect (checked by the tests).
    value_range: tuple[float, float] | None = None

    def field_defaults(self) -> dict[str, Any]:
        defaults: dict[str, Any] = {"thresholds": thresholds_json(DEFAULT_THRESHOLDS)}
        custom = panel_options.CUSTOM.get(self.type)
        defaults["custom"] = custom() if custom else {}
        if self.unit:
            defaults["unit"] = self.unit
        if self.color:
            defaults["color"] = {"mode": "fixed", "fixedColor": self.color}
        elif self.type in ("timeseries", "piechart", "barchart"):
            defaults["color"] = {"mode": "palette-classic"}
        else:
            defaults["color"] = {"mode": "thresholds"}
        return defaults

    def options(self) -> Any:
        if self.type == "barchart":
            assert self.x_field, f"{self.title}: a bar chart needs x_field"
            return panel_options.barchart_options(self.x_field)
        return panel_options.OPTIONS[self.type]()

    def to_json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        overrides = [
            {"matcher": {"id": "byName", "options": name}, "properties": column.properties()}
            for name, column in self.columns.items()
        ]
        return {
            "id": panel_id,
            "type": self.type,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "maxDataPoints": MAX_DATA_POINTS,
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "fieldConfig": {"defaults": self.field_defaults(), "overrides": overrides},
            "options": self.options(),
            "targets": [
                {
                    "refId": "A",
                    "datasource": DATASOURCE,
                    "editorType": "sql",
                    "format": 0 if self.shape == "timeseries" else 1,
                    "queryType": "timeseries" if self.shape == "timeseries" else "table",
                    "rawSql": self.sql.strip(),
                }
            ],
        }


@dataclass(frozen=True, kw_only=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel]
    extra_variables: list[dict[str, Any]] = field(default_factory=list)
    # The service, endpoint and region variables, for dashboards about requests.
    request_variables: bool = True

    def to_json(self) -> dict[str, Any]:
        panels, x, y, row_height = [], 0, 0, 0
        for index, panel in enumerate(self.panels, start=1):
            if x + panel.width > GRID_COLUMNS:
                x, y, row_height = 0, y + row_height, 0
            panels.append(panel.to_json(index, x, y))
            x += panel.width
            row_height = max(row_height, panel.height)
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["clickpulse"],
            "timezone": "browser",
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "refresh": "10s",
            "time": {"from": "now-1h", "to": "now"},
            "timepicker": {},
            "fiscalYearStartMonth": 0,
            "links": [],
            "annotations": {"list": []},
            "templating": {
                "list": [*(variables() if self.request_variables else []), *self.extra_variables]
            },
            "panels": panels,
        }


def query_variable(name: str, label: str, sql: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": sql,
        "definition": sql,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "sort": 1,
        "hide": 0,
    }


def variables() -> list[dict[str, Any]]:
    return [
        query_variable(
            "service",
            "Service",
            f"SELECT DISTINCT service_name FROM {MINUTES} WHERE $__timeFilter(ts)",
        ),
        query_variable(
            "endpoint",
            "Endpoint",
            f"SELECT DISTINCT endpoint FROM {MINUTES} WHERE $__timeFilter(ts) AND {SERVICE}"
            " AND endpoint != ''",
        ),
        query_variable(
            "region", "Region", f"SELECT DISTINCT region FROM {MINUTES} WHERE $__timeFilter(ts)"
        ),
    ]
