"""Each panel type's `options` and `fieldConfig.defaults.custom`, built from Grafana 11.6's own
types (grafana-foundation-sdk's models for 11.6, generated from the panels' schemas), so an
option a panel type does not have cannot be written.

Everything a viewer's result depends on is set explicitly rather than left to the plugin's
default, because the defaults are what went wrong: pie charts and bar gauges reduce every
numeric column to one value ("calculate", `lastNotNull`) unless `reduceOptions.values` is true,
so "Status codes" showed one slice (public/app/plugins/panel/stat/common.ts,
addStandardDataReduceOptions; @grafana/data field/fieldDisplay getFieldDisplayValues)."""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import (
    barchart,
    bargauge,
    common,
    piechart,
    stat,
    table,
    timeseries,
)

LEGEND = common.VizLegendOptions(
    display_mode=common.LegendDisplayMode.LIST,
    placement=common.LegendPlacement.BOTTOM,
    show_legend=True,
    calcs=[],
)
TOOLTIP = common.VizTooltipOptions(mode=common.TooltipDisplayMode.MULTI, sort=common.SortOrder.NONE)
# One slice or bar per row of every numeric column (values), not one per column (calculate).
# limit: getFieldDisplayValues shows 25 rows by default (DEFAULT_FIELD_DISPLAY_VALUES_LIMIT).
EVERY_ROW = common.ReduceDataOptions(values=True, calcs=[], fields="", limit=25)
# A stat's one row, as its value.
LAST_VALUE = common.ReduceDataOptions(values=False, calcs=["lastNotNull"], fields="")


def plain(model: object) -> Any:
    """An SDK model as the JSON Grafana stores (enums as their values)."""
    return json.loads(json.dumps(model, cls=JSONEncoder))


def timeseries_options() -> Any:
    return plain(timeseries.Options(legend=LEGEND, tooltip=TOOLTIP))


def timeseries_custom() -> Any:
    return plain(
        common.GraphFieldConfig(
            draw_style=common.GraphDrawStyle.LINE,
            line_width=1,
            fill_opacity=10,
            show_points=common.VisibilityMode.AUTO,
            span_nulls=False,
            stacking=common.StackingConfig(mode=common.StackingMode.NONE, group="A"),
        )
    )


def piechart_options() -> Any:
    return plain(
        piechart.Options(
            pie_type=piechart.PieChartType.PIE,
            reduce_options=EVERY_ROW,
            display_labels=[piechart.PieChartLabels.PERCENT],
            legend=piechart.PieChartLegendOptions(
                display_mode=common.LegendDisplayMode.TABLE,
                placement=common.LegendPlacement.RIGHT,
                show_legend=True,
                values=[piechart.PieChartLegendValues.VALUE, piechart.PieChartLegendValues.PERCENT],
            ),
            tooltip=common.VizTooltipOptions(
                mode=common.TooltipDisplayMode.SINGLE, sort=common.SortOrder.NONE
            ),
            orientation=common.VizOrientation.AUTO,
        )
    )


def bargauge_options() -> Any:
    return plain(
        bargauge.Options(
            reduce_options=EVERY_ROW,
            orientation=common.VizOrientation.HORIZONTAL,
            display_mode=common.BarGaugeDisplayMode.BASIC,
            value_mode=common.BarGaugeValueMode.TEXT,
            name_placement=common.BarGaugeNamePlacement.LEFT,
            show_unfilled=True,
            sizing=common.BarGaugeSizing.AUTO,
            legend=common.VizLegendOptions(
                display_mode=common.LegendDisplayMode.LIST,
                placement=common.LegendPlacement.BOTTOM,
                show_legend=False,
                calcs=[],
            ),
        )
    )


def barchart_options(x_field: str) -> Any:
    return plain(
        barchart.Options(
            x_field=x_field,
            orientation=common.VizOrientation.VERTICAL,
            show_value=common.VisibilityMode.AUTO,
            stacking=common.StackingMode.NONE,
            legend=LEGEND,
            tooltip=TOOLTIP,
        )
    )


def stat_options() -> Any:
    return plain(
        stat.Options(
            reduce_options=LAST_VALUE,
            # No colour: the default (colorMode "value" with the default thresholds, red from
            # 80) would paint every revenue above $80 red.
            color_mode=common.BigValueColorMode.NONE,
            graph_mode=common.BigValueGraphMode.NONE,
            justify_mode=common.BigValueJustifyMode.AUTO,
            text_mode=common.BigValueTextMode.VALUE,
            orientation=common.VizOrientation.AUTO,
            wide_layout=True,
            show_percent_change=False,
        )
    )


def table_options() -> Any:
    return plain(
        table.Options(
            show_header=True,
            cell_height=common.TableCellHeight.SM,
            footer=common.TableFooterOptions(show=False, reducer=["sum"], count_rows=False),
        )
    )


def table_custom() -> Any:
    return plain(
        common.TableFieldOptions(
            align=common.FieldTextAlignment.AUTO,
            cell_options=common.TableAutoCellOptions(),
            inspect=False,
        )
    )


def colored_background() -> Any:
    return plain(
        common.TableColoredBackgroundCellOptions(mode=common.TableCellBackgroundDisplayMode.BASIC)
    )


OPTIONS = {
    "timeseries": timeseries_options,
    "piechart": piechart_options,
    "bargauge": bargauge_options,
    "stat": stat_options,
    "table": table_options,
}
CUSTOM = {"timeseries": timeseries_custom, "table": table_custom}
