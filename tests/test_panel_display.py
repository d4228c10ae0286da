"""What Grafana 11.6 would display for every panel, given its JSON and rows like its query
returns (display.py models @grafana/data's getFieldDisplayValues, display names, overrides and
value formats), and the panel JSON checked against Grafana 11.6's own types.

Shown by mutation: with the panels as they were before (pie chart and bar gauges without
reduceOptions; the response-time table's `ms`, thresholds and coloured cells on the field
defaults), test_every_row_is_a_slice_or_a_bar sees one item named "requests"/"sessions" instead
of 3/10/3, test_units_and_thresholds_are_per_column sees the request count 1234 as "1.23 s" on
red, and test_panel_json_has_only_what_grafana_11_6_has loses the tables' and stats' legend:
all fail. test_a_panel_without_reduce_options_shows_one_item keeps that old case as a fact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from clickpulse_grafana.dashboards import DASHBOARDS
from clickpulse_grafana.display import show
from clickpulse_grafana.value_format import NAMED_COLORS, format_value
from grafana_foundation_sdk.models import (
    barchart,
    bargauge,
    common,
    dashboard,
    piechart,
    stat,
    table,
    timeseries,
)

pytestmark = pytest.mark.no_stack

UTC_ZONE = ZoneInfo("UTC")
T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
TIMES = [T0 + timedelta(minutes=i) for i in range(3)]
PANELS = {
    (name, p["title"]): p for name, board in DASHBOARDS.items() for p in board.to_json()["panels"]
}

# Rows shaped as each query returns them (its columns, in order).
ROWS: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {
    "Requests per second by service": (
        ["time", "service_name", "rps"],
        [(t, s, 1.5) for t in TIMES for s in ("crud-api", "ecommerce-api")],
    ),
    "Latency: average and p95": (["time", "avg_ms", "p95_ms"], [(t, 12.0, 40.0) for t in TIMES]),
    "Refused requests per second": (
        ["time", "unauthorized", "forbidden", "rate_limited", "shed"],
        [(t, 0.1, 0.0, 2.5, 0.3) for t in TIMES],
    ),
    "Status codes": (["status", "requests"], [("200", 900), ("404", 50), ("503", 3)]),
    "Top 10 endpoints": (["route", "requests"], [(f"GET /r{i}", 100 - i) for i in range(10)]),
    "Active users by region": (["region", "users"], [("us-east", 40), ("eu-west", 25)]),
    "Response time per endpoint": (
        ["route", "request_count", "avg_ms", "p50_ms", "p95_ms", "p99_ms"],
        [("GET /products", 1234, 12.5, 10.0, 120.0, 600.0)],
    ),
    "Throughput by service": (
        ["time", "service_name", "requests"],
        [(t, "crud-api", 90) for t in TIMES],
    ),
    "Error rate (5xx share)": (["time", "error_rate"], [(t, 0.01) for t in TIMES]),
    "Errors per minute": (
        ["time", "server_errors", "client_errors"],
        [(t, 0.0, 2.0) for t in TIMES],
    ),
    "CPU by service": (["time", "service", "cpu"], [(t, "crud-api", 0.25) for t in TIMES]),
    "Memory by service": (["time", "service", "rss"], [(t, "crud-api", 2.5e8) for t in TIMES]),
    "Errors by endpoint": (["route", "status_code", "requests"], [("GET /products", 404, 7)]),
    "Slowest requests": (
        ["timestamp", "service_name", "route", "status_code", "response_time_ms", "trace_id"],
        [(T0, "crud-api", "GET /products", 200, 812.5, "ab12")],
    ),
    "Latest server errors (5xx)": (
        ["timestamp", "service_name", "route", "status_code", "response_time_ms", "trace_id"],
        [(T0, "crud-api", "GET /products", 500, 3.2, "cd34")],
    ),
    "Trace spans (pick a trace above)": (
        ["Timestamp", "ServiceName", "SpanName", "SpanKind", "duration_ms", "StatusCode"],
        [(T0, "crud-api", "GET /products", "Server", 3.25, "Unset")],
    ),
    "Revenue": (["revenue"], [(12345.5,)]),
    "Active users": (["users"], [(321,)]),
    "Orders": (["orders"], [(120,)]),
    "Checkout conversion": (["conversion"], [(0.354,)]),
    "Revenue over time": (["time", "revenue"], [(t, 100.0) for t in TIMES]),
    "Active users over time": (["time", "users"], [(t, 12) for t in TIMES]),
    "Most viewed products": (
        ["product", "category", "views"],
        [("Lamp", "home", 30), ("Desk", "office", 12)],
    ),
    "Funnel: sessions that viewed, added to cart, checked out": (
        ["stage", "sessions"],
        [("1 viewed a product", 80), ("2 added to cart", 30), ("3 checked out", 10)],
    ),
    "Ingest rate by signal": (
        ["time", "signal", "accepted"],
        [(t, s, 10.0) for t in TIMES for s in ("traces", "metrics", "logs")],
    ),
    "Refused and failed items per minute": (
        ["time", "refused", "failed", "dropped"],
        [(t, 0.0, 0.0, 0.0) for t in TIMES],
    ),
    "Collector sending queue": (
        ["time", "signal", "queued"],
        [(t, s, 3.0) for t in TIMES for s in ("traces", "metrics")],
    ),
    "Visibility lag": (["time", "p50", "p95", "max"], [(t, 0.6, 1.1, 2.0) for t in TIMES]),
    "ClickHouse active parts per partition": (
        ["time", "table", "parts"],
        [(t, "otel.otel_traces", 4.0) for t in TIMES],
    ),
    "ClickHouse inserts and merges per minute": (
        ["time", "inserts", "failed_inserts", "merges"],
        [(t, 30.0, 0.0, 4.0) for t in TIMES],
    ),
    "ClickHouse insert latency": (["time", "insert_ms"], [(t, 12.0) for t in TIMES]),
    "ClickHouse disk": (["time", "used", "free"], [(t, 2e11, 8e10) for t in TIMES]),
    "PostgreSQL sessions by state": (
        ["time", "state", "sessions"],
        [(t, s, 3.0) for t in TIMES for s in ("active", "idle")],
    ),
    "PostgreSQL: oldest transaction and lock waits": (
        ["time", "oldest_transaction", "lock_waits", "up"],
        [(t, 0.0, 0.0, 1.0) for t in TIMES],
    ),
    "Alerts pending and firing": (["time", "pending", "firing"], [(t, 0, 1) for t in TIMES]),
    "Alert rules now": (
        ["rule", "instance", "state", "reported"],
        [("clickpulse-5xx-share", "service=crud-api", "firing", T0)],
    ),
}


def _show(title: str) -> Any:
    panel = next(p for (_, t), p in PANELS.items() if t == title)
    columns, rows = ROWS[title]
    return show(panel, columns, rows, UTC_ZONE)


def test_every_panel_has_sample_rows() -> None:
    assert {title for _, title in PANELS} == set(ROWS)


@pytest.mark.parametrize(
    ("title", "names"),
    [
        ("Status codes", ["200", "404", "503"]),
        ("Top 10 endpoints", [f"GET /r{i}" for i in range(10)]),
        (
            "Funnel: sessions that viewed, added to cart, checked out",
            ["1 viewed a product", "2 added to cart", "3 checked out"],
        ),
    ],
)
def test_every_row_is_a_slice_or_a_bar(title: str, names: list[str]) -> None:
    assert [item.name for item in _show(title).items] == names


def test_a_panel_without_reduce_options_shows_one_item() -> None:
    """The old Status codes panel: Grafana reduces the column to its last value."""
    panel = next(p for (_, t), p in PANELS.items() if t == "Status codes")
    old = {**panel, "options": {"legend": panel["options"]["legend"]}}
    columns, rows = ROWS["Status codes"]
    items = show(old, columns, rows, UTC_ZONE).items
    assert [(i.name, i.value) for i in items] == [("requests", 3.0)]


def test_units_and_thresholds_are_per_column() -> None:
    columns = {c.name: c for c in _show("Response time per endpoint").columns}
    assert columns["request_count"].texts == ["1234"]
    assert columns["request_count"].backgrounds is None
    assert columns["route"].backgrounds is None
    assert [columns[c].texts[0] for c in ("avg_ms", "p95_ms", "p99_ms")] == [
        "12.5 ms",
        "120 ms",
        "600 ms",
    ]
    assert [columns[c].backgrounds for c in ("avg_ms", "p95_ms", "p99_ms")] == [
        [NAMED_COLORS["green"]],
        [NAMED_COLORS["yellow"]],
        [NAMED_COLORS["red"]],
    ]
    assert [c.header for c in columns.values()] == ["route", "requests", "avg", "p50", "p95", "p99"]


def test_series_are_named_as_grafana_names_them() -> None:
    assert [s.name for s in _show("Requests per second by service").series] == [
        "rps crud-api",
        "rps ecommerce-api",
    ]
    assert [s.name for s in _show("Latency: average and p95").series] == ["avg_ms", "p95_ms"]
    assert [s.unit for s in _show("CPU by service").series] == ["percentunit"]
    refused = _show("Refused requests per second").series
    assert [s.name for s in refused] == ["unauthorized", "forbidden", "rate_limited", "shed"]
    assert {s.unit for s in refused} == {"reqps"}


def test_pipeline_series_are_per_signal_and_units_per_column() -> None:
    queue = _show("Collector sending queue")
    assert [s.name for s in queue.series] == ["queued traces", "queued metrics"]
    postgres = _show("PostgreSQL: oldest transaction and lock waits")
    assert [(s.name, s.unit) for s in postgres.series] == [
        ("oldest_transaction", "s"),
        ("lock_waits", "short"),
        ("up", "bool"),
    ]


def test_stats_show_one_value_with_its_unit_and_no_threshold_colour() -> None:
    texts = {t: [i.text for i in _show(t).items] for t in ("Revenue", "Orders", "Active users")}
    assert texts == {"Revenue": ["$12.3K"], "Orders": ["120"], "Active users": ["321"]}
    assert [i.text for i in _show("Checkout conversion").items] == ["35.4%"]
    for title in ("Revenue", "Orders", "Active users", "Checkout conversion"):
        panel = next(p for (_, t), p in PANELS.items() if t == title)
        assert panel["options"]["colorMode"] == "none", title


def test_bars_are_categories_of_the_x_field() -> None:
    view = _show("Active users by region")
    assert view.categories == ["us-east", "eu-west"]
    assert [s.name for s in view.series] == ["users"]


def test_the_trace_link_is_on_the_trace_id_only_and_keeps_the_variables() -> None:
    for title in ("Slowest requests", "Latest server errors (5xx)"):
        view = _show(title)
        assert [c.name for c in view.columns if c.has_link] == ["trace_id"]
        panel = next(p for (_, t), p in PANELS.items() if t == title)
        (link,) = next(
            o["properties"][0]["value"]
            for o in panel["fieldConfig"]["overrides"]
            if o["matcher"]["options"] == "trace_id"
        )
        for variable in ("service", "endpoint", "region"):
            assert f"${{{variable}:queryparam}}" in link["url"]
        assert "${__url_time_range}" in link["url"]


def test_times_are_24_hour_in_the_dashboards_zone() -> None:
    evening = datetime(2026, 11, 29, 21, 5, 9, tzinfo=UTC)
    assert format_value(evening, None, ZoneInfo("Europe/Berlin")) == "2026-11-29 22:05:09"


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (1234, "none", "1234"),
        (12345, "short", "12.3 K"),
        (0.5, "ms", "0.500 ms"),
        (1500, "ms", "1.50 s"),
        (2.5e8, "bytes", "238 MiB"),
        (1.5, "reqps", "1.50 req/s"),
        (0.0123, "percentunit", "1.23%"),
        (12345.5, "currencyUSD", "$12.3K"),
    ],
)
def test_units_format_as_grafana_formats_them(value: float, unit: str, text: str) -> None:
    assert format_value(value, unit, UTC_ZONE) == text


OPTION_MODELS: dict[str, Any] = {
    "timeseries": (timeseries.Options, common.GraphFieldConfig),
    "piechart": (piechart.Options, common.HideableFieldConfig),
    "bargauge": (bargauge.Options, None),
    "barchart": (barchart.Options, barchart.FieldConfig),
    "stat": (stat.Options, None),
    "table": (table.Options, common.TableFieldOptions),
}


def _missing(written: Any, parsed: Any, path: str = "") -> list[str]:
    """Keys of `written` that Grafana's type dropped: options the panel type does not have."""
    if isinstance(written, dict) and isinstance(parsed, dict):
        return [
            miss
            for key, value in written.items()
            for miss in (
                [f"{path}.{key}"]
                if key not in parsed
                else _missing(value, parsed[key], f"{path}.{key}")
            )
        ]
    return []


@pytest.mark.parametrize(("key"), list(PANELS), ids=[f"{d}:{t}" for d, t in PANELS])
def test_panel_json_has_only_what_grafana_11_6_has(key: tuple[str, str]) -> None:
    """Each part read by Grafana 11.6's type for it (grafana-foundation-sdk 11.6 models) and
    written back: anything the type does not know (a legend on a table) is lost and fails."""
    from clickpulse_grafana.panel_options import plain

    panel = PANELS[key]
    options_model, custom_model = OPTION_MODELS[panel["type"]]
    assert _missing(panel["options"], plain(options_model.from_json(panel["options"]))) == []
    defaults = panel["fieldConfig"]["defaults"]
    custom = defaults.get("custom", {})
    if custom_model is None:
        assert custom == {}
    else:
        assert _missing(custom, plain(custom_model.from_json(custom))) == []
    field_defaults = {k: v for k, v in defaults.items() if k != "custom"}
    assert _missing(field_defaults, plain(dashboard.FieldConfig.from_json(field_defaults))) == []
    top = {k: v for k, v in panel.items() if k not in ("options", "fieldConfig", "targets")}
    assert _missing(top, plain(dashboard.Panel.from_json(top))) == []


def test_the_schema_check_catches_an_option_grafana_lacks() -> None:
    panel = next(p for (_, t), p in PANELS.items() if t == "Revenue")
    with_legend = {**panel["options"], "legend": {"showLegend": True}}
    assert _missing(with_legend, stat.Options.from_json(with_legend).to_json()) == [".legend"]
