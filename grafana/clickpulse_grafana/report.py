"""`nox -s report`: the dashboards without Grafana. Reads the same dashboard JSON, runs the same
SQL (macros expanded as the plugin does) as the read-only analyst, draws what Grafana would
show of the answer (display.py: the same slices, bars, units and colours, the panels in the
dashboard's order and sizes, times in 24-hour time in a named zone), and writes one
self-contained HTML page plus a PNG per dashboard, charted with Altair (Vega-Lite, rendered by
vl-convert: no browser, no network)."""

from __future__ import annotations

import argparse
import html
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import altair as alt
import pandas as pd
import vl_convert as vlc
from clickhouse_connect.driver.client import Client

from clickpulse.stack.clickhouse_client import reader_client
from clickpulse.stack.settings import REPO_ROOT, Settings
from clickpulse_grafana import charts
from clickpulse_grafana.dashboards import DASHBOARDS_DIR
from clickpulse_grafana.display import View, show
from clickpulse_grafana.macros import TimeRange, Variables, expand


@dataclass
class PanelResult:
    title: str
    type: str
    frame: pd.DataFrame
    view: View | None = None
    error: str | None = None


def parse_time(text: str, now: datetime) -> datetime:
    """`now`, `now-6h`, `now-30m`, `now-2d`, or an ISO timestamp (UTC if no zone)."""
    match = re.fullmatch(r"now(?:-(\d+)([smhd]))?", text.strip())
    if match:
        if match.group(1) is None:
            return now
        seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return now - timedelta(seconds=int(match.group(1)) * seconds)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"--from/--to: {text!r} is neither now-N[smhd] nor an ISO time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# C0 control characters abort vl-convert's renderer (a Rust panic that ends the process), and a
# lone surrogate fails its JSON: both reach the data from clients (a fuzzed product name).
_UNDRAWABLE = re.compile("[\x00-\x1f\ud800-\udfff]")


def drawable(value: Any) -> Any:
    """`value` with characters the renderer cannot take shown as U+FFFD, as a browser would."""
    return _UNDRAWABLE.sub("\ufffd", value) if isinstance(value, str) else value


def run_panel(
    client: Client,
    panel: dict[str, Any],
    time_range: TimeRange,
    variables: Variables,
    zone: ZoneInfo,
) -> PanelResult:
    """The panel's SQL as Grafana sends it, and what Grafana shows of the answer."""
    try:
        result = client.query(expand(panel["targets"][0]["rawSql"], time_range, variables))
        columns = list(result.column_names)
        rows = [tuple(drawable(v) for v in r) for r in result.result_rows]
        view = show(panel, columns, rows, zone)
        return PanelResult(panel["title"], panel["type"], pd.DataFrame(rows, columns=columns), view)
    except Exception as exc:
        return PanelResult(panel["title"], panel["type"], pd.DataFrame(), error=str(exc)[:300])


def _table_html(view: View) -> str:
    """The table as Grafana shows it: headers, formatted cells, coloured cells."""
    head = "".join(f"<th>{html.escape(c.header)}</th>" for c in view.columns)
    body = []
    for row in range(min(view.rows, 25)):
        cells = []
        for column in view.columns:
            style = (
                f' style="background:{column.backgrounds[row]};color:#000"'
                if column.backgrounds
                else ""
            )
            cells.append(f"<td{style}>{html.escape(column.texts[row])}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="data"><tr>{head}</tr>{"".join(body)}</table>'


def render_dashboard(
    client: Client, board: dict[str, Any], time_range: TimeRange, zone: ZoneInfo
) -> tuple[str, bytes, list[PanelResult]]:
    variables = Variables()
    results: list[PanelResult] = []
    for panel in board["panels"]:
        if "trace_id" in panel["targets"][0]["rawSql"]:
            # As a viewer who clicked the slowest request's trace id.
            slowest = next(
                (r for r in results if "trace_id" in r.frame.columns and not r.frame.empty), None
            )
            variables = Variables(
                {"trace_id": str(slowest.frame["trace_id"].iloc[0]) if slowest else ""}
            )
        results.append(run_panel(client, panel, time_range, variables, zone))
    sections: list[str] = []
    rows_of_charts: dict[int, list[Any]] = {}
    for panel, result in zip(board["panels"], results, strict=True):
        rows = result.view.rows if result.view else 0
        if result.error or result.view is None:
            body = f'<p class="error">query failed: {html.escape(result.error or "")}</p>'
            drawn = charts.empty(panel, "query failed")
        elif rows == 0:
            body = '<p class="empty">No data</p>'
            drawn = charts.empty(panel, "No data")
        else:
            span = (time_range.start, time_range.end)
            drawn = charts.chart(panel, result.view, zone.key, span)
            svg = vlc.vegalite_to_svg(charts.themed(drawn).to_json())
            body = f'<div class="chart">{svg}</div>'
            if panel["type"] == "table":
                body += _table_html(result.view)
        rows_of_charts.setdefault(panel["gridPos"]["y"], []).append(drawn)
        sections.append(
            f'<section class="panel" data-rows="{rows}" data-title="{html.escape(result.title)}" '
            f'style="grid-column: span {panel["gridPos"]["w"]}">'
            f"<h3>{html.escape(result.title)}</h3>{body}</section>"
        )
    # The PNG: Grafana's grid, row by row, panels in the dashboard's order and sizes.
    grid = alt.vconcat(
        *(
            alt.hconcat(*row, spacing=8).resolve_scale(color="independent")
            for _, row in sorted(rows_of_charts.items())
        ),
        spacing=8,
    ).properties(
        title=alt.TitleParams(
            f"{board['title']}  ·  {_span(time_range, zone)}", anchor="start", fontSize=16
        )
    )
    png = vlc.vegalite_to_png(
        charts.themed(grid.resolve_scale(color="independent")).to_json(), scale=1
    )
    page = (
        f'<div class="dashboard" id="{board["uid"]}"><h2>{html.escape(board["title"])}</h2>'
        f"<p>{html.escape(board.get('description', ''))}</p>"
        f'<div class="grid">{"".join(sections)}</div></div>'
    )
    return page, png, results


def _span(time_range: TimeRange, zone: ZoneInfo) -> str:
    start, end = time_range.start.astimezone(zone), time_range.end.astimezone(zone)
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} ({zone.key})"


STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;background:#111217;color:#ccccdc}
.grid{display:grid;grid-template-columns:repeat(24,1fr);gap:8px}
.panel{background:#181b1f;border:1px solid #2c3235;border-radius:2px;padding:8px;overflow:auto}
.panel h3{font-size:14px;margin:4px 0 8px}
table.data{border-collapse:collapse;font-size:12px;margin-top:8px}
table.data td,table.data th{border-bottom:1px solid #2c3235;padding:2px 8px;text-align:left}
.error{color:#f2495c}.empty{color:#8e8e8e}
"""


def write_report(
    settings: Settings, time_range: TimeRange, out: Path, zone: ZoneInfo
) -> tuple[Path, list[Path], dict[str, list[PanelResult]]]:
    client = reader_client(settings)
    out.mkdir(parents=True, exist_ok=True)
    pages, pngs, all_results = [], [], {}
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        board = json.loads(path.read_text())
        page, png, results = render_dashboard(client, board, time_range, zone)
        pages.append(page)
        all_results[board["uid"]] = results
        png_path = out / f"{path.stem}.png"
        png_path.write_bytes(png)
        pngs.append(png_path)
    span = _span(time_range, zone)
    index = out / "index.html"
    index.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>clickpulse report</title>"
        f"<style>{STYLE}</style></head><body><h1>clickpulse report</h1><p>{span}</p>"
        f"{''.join(pages)}</body></html>"
    )
    return index, pngs, all_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nox -s report --", description=__doc__)
    parser.add_argument("--from", dest="start", default="now-1h")
    parser.add_argument("--to", dest="end", default="now")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument(
        "--timezone",
        default="UTC",
        help="the zone times are shown in (the dashboards show the browser's), e.g. Europe/Berlin",
    )
    args = parser.parse_args(argv)
    now = datetime.now(UTC)
    start, end = parse_time(args.start, now), parse_time(args.end, now)
    if start >= end:
        raise SystemExit("--from must be before --to")
    try:
        zone = ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SystemExit(f"--timezone: {args.timezone!r} is not a time zone") from None
    index, pngs, results = write_report(Settings.from_env(), TimeRange(start, end), args.out, zone)
    empty = [
        f"{uid}: {r.title}"
        for uid, rs in results.items()
        for r in rs
        if not (r.view and r.view.rows)
    ]
    print(f"wrote {index}")
    for png in pngs:
        print(f"wrote {png}")
    if empty:
        print("panels without data in this range: " + "; ".join(empty))
    return 0
