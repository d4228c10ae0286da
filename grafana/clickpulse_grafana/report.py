"""`nox -s report`: the dashboards without Grafana. Reads the same dashboard JSON, runs the same
SQL (macros expanded as the plugin does) as the read-only analyst, and writes one
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

import altair as alt
import pandas as pd
import vl_convert as vlc
from clickhouse_connect.driver.client import Client

from clickpulse.stack.clickhouse_client import reader_client
from clickpulse.stack.settings import REPO_ROOT, Settings
from clickpulse_grafana.dashboards import DASHBOARDS_DIR
from clickpulse_grafana.macros import TimeRange, Variables, expand

WIDTH_PER_UNIT = 34  # pixels per Grafana grid column


@dataclass
class PanelResult:
    title: str
    type: str
    shape: str
    frame: pd.DataFrame
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


def run_panel(
    client: Client, panel: dict[str, Any], time_range: TimeRange, variables: Variables
) -> PanelResult:
    target = panel["targets"][0]
    shape = "timeseries" if target["format"] == 0 else "table"
    if panel["type"] == "stat":
        shape = "value"
    try:
        result = client.query(expand(target["rawSql"], time_range, variables))
        frame = pd.DataFrame(result.result_rows, columns=list(result.column_names))
        return PanelResult(panel["title"], panel["type"], shape, frame)
    except Exception as exc:
        return PanelResult(panel["title"], panel["type"], shape, pd.DataFrame(), str(exc)[:300])


def _chart(result: PanelResult, width: int) -> Any:
    """An Altair chart for the panel, or None when a table says it better."""
    frame = result.frame
    if frame.empty:
        return None
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    labels = [c for c in frame.columns if c not in numeric]
    title = alt.TitleParams(result.title, anchor="start")
    if result.shape == "timeseries":
        time_col = frame.columns[0]
        series = [c for c in labels if c != time_col]
        if series:
            return (
                alt.Chart(frame, title=title, width=width, height=160)
                .mark_line(point=True)
                .encode(
                    x=alt.X(f"{time_col}:T", title=None),
                    y=alt.Y(f"{numeric[0]}:Q"),
                    color=alt.Color(f"{series[0]}:N"),
                )
            )
        long = frame.melt(id_vars=[time_col], value_vars=numeric, var_name="series")
        return (
            alt.Chart(long, title=title, width=width, height=160)
            .mark_line(point=True)
            .encode(x=alt.X(f"{time_col}:T", title=None), y=alt.Y("value:Q"), color="series:N")
        )
    if result.shape == "value":
        value = frame.iloc[0, 0]
        text = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"
        return (
            alt.Chart(pd.DataFrame({"v": [text]}), title=title, width=width, height=80)
            .mark_text(fontSize=36, fontWeight="bold")
            .encode(text="v:N")
        )
    labels = [c for c in labels if not pd.api.types.is_datetime64_any_dtype(frame[c])]
    # Wide tables (drill-downs) read better as tables than as any chart.
    if not numeric or not labels or (result.type == "table" and len(frame.columns) > 3):
        return None
    label, value = labels[0], numeric[-1]
    if result.type == "piechart":
        return (
            alt.Chart(frame, title=title, width=160, height=160)
            .mark_arc()
            .encode(theta=f"{value}:Q", color=f"{label}:N")
        )
    return (
        alt.Chart(
            frame.head(15), title=title, width=width, height=max(60, 18 * min(len(frame), 15))
        )
        .mark_bar()
        .encode(y=alt.Y(f"{label}:N", sort="-x", title=None), x=alt.X(f"{value}:Q"))
    )


def _table_html(frame: pd.DataFrame) -> Any:
    shown = frame.head(25).copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].round(3)
    return shown.to_html(index=False, border=0, classes="data", escape=True)


def render_dashboard(
    client: Client, board: dict[str, Any], time_range: TimeRange
) -> tuple[str, bytes, list[PanelResult]]:
    variables = Variables()
    results: list[PanelResult] = []
    for panel in board["panels"]:
        if "trace_id" in panel["targets"][0]["rawSql"]:
            slowest = next(
                (r for r in results if "trace_id" in r.frame.columns and not r.frame.empty), None
            )
            variables = Variables(
                {"trace_id": str(slowest.frame["trace_id"].iloc[0]) if slowest else ""}
            )
        results.append(run_panel(client, panel, time_range, variables))
    sections, charts = [], []
    for panel, result in zip(board["panels"], results, strict=True):
        width = panel["gridPos"]["w"] * WIDTH_PER_UNIT - 40
        chart = _chart(result, width)
        rows = len(result.frame)
        body: str
        if result.error:
            body = f'<p class="error">query failed: {html.escape(result.error)}</p>'
        elif rows == 0:
            body = '<p class="empty">no data in this range</p>'
        else:
            body = ""
            if chart is not None:
                charts.append(chart)
                svg = vlc.vegalite_to_svg(chart.to_json())
                body += f'<div class="chart">{svg}</div>'
            if result.shape == "table" or chart is None:
                body += _table_html(result.frame)
        sections.append(
            f'<section class="panel" data-rows="{rows}" data-title="{html.escape(result.title)}" '
            f'style="grid-column: span {panel["gridPos"]["w"]}">'
            f"<h3>{html.escape(result.title)}</h3>{body}</section>"
        )
    columns = [
        alt.hconcat(*charts[i : i + 2]).resolve_scale(color="independent")
        for i in range(0, len(charts), 2)
    ]
    png = b""
    if columns:
        grid = alt.vconcat(*columns).properties(title=board["title"])
        spec = grid.resolve_scale(color="independent").to_json()
        png = vlc.vegalite_to_png(spec, scale=1)
    page = (
        f'<div class="dashboard" id="{board["uid"]}"><h2>{html.escape(board["title"])}</h2>'
        f"<p>{html.escape(board.get('description', ''))}</p>"
        f'<div class="grid">{"".join(sections)}</div></div>'
    )
    return page, png, results


STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;background:#f7f8fa;color:#222}
.grid{display:grid;grid-template-columns:repeat(24,1fr);gap:12px}
.panel{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 12px;overflow:auto}
.panel h3{font-size:14px;margin:4px 0 8px}
table.data{border-collapse:collapse;font-size:12px}
table.data td,table.data th{border-bottom:1px solid #eee;padding:2px 8px;text-align:left}
.error{color:#b00}.empty{color:#888}
"""


def write_report(
    settings: Settings, time_range: TimeRange, out: Path
) -> tuple[Path, list[Path], dict[str, list[PanelResult]]]:
    client = reader_client(settings)
    out.mkdir(parents=True, exist_ok=True)
    pages, pngs, all_results = [], [], {}
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        board = json.loads(path.read_text())
        page, png, results = render_dashboard(client, board, time_range)
        pages.append(page)
        all_results[board["uid"]] = results
        png_path = out / f"{path.stem}.png"
        png_path.write_bytes(png)
        pngs.append(png_path)
    span = f"{time_range.start:%Y-%m-%d %H:%M} to {time_range.end:%Y-%m-%d %H:%M} UTC"
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
    args = parser.parse_args(argv)
    now = datetime.now(UTC)
    start, end = parse_time(args.start, now), parse_time(args.end, now)
    if start >= end:
        raise SystemExit("--from must be before --to")
    index, pngs, results = write_report(Settings.from_env(), TimeRange(start, end), args.out)
    empty = [f"{uid}: {r.title}" for uid, rs in results.items() for r in rs if r.frame.empty]
    print(f"wrote {index}")
    for png in pngs:
        print(f"wrote {png}")
    if empty:
        print("panels without data in this range: " + "; ".join(empty))
    return 0
