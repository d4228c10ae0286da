"""`nox -s report`: the dashboards as an HTML page and PNGs, with data in every panel, and the
page as a browser (headless Chromium) renders it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import vl_convert as vlc
from clickpulse_grafana import charts
from clickpulse_grafana.dashboards import DASHBOARDS
from clickpulse_grafana.display import show

from clickpulse.stack.settings import REPO_ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, traffic: dict[str, Any]) -> Path:
    out = tmp_path_factory.mktemp("report")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "clickpulse_grafana",
            "report",
            "--from",
            "now-1h",
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "panels without data" not in result.stdout, result.stdout
    return out


def test_every_panel_of_every_dashboard_has_data(report: Path) -> None:
    page = (report / "index.html").read_text()
    sections = re.findall(r'data-rows="(\d+)" data-title="([^"]+)"', page)
    expected = sum(len(board.panels) for board in DASHBOARDS.values())
    assert len(sections) == expected
    assert all(int(rows) > 0 for rows, _ in sections), [t for r, t in sections if r == "0"]
    assert "query failed" not in page
    # Self-contained: no script, nothing fetched from elsewhere.
    assert "<script" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_one_png_per_dashboard(report: Path) -> None:
    for name in DASHBOARDS:
        data = (report / f"{name}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 20_000


def test_headless_chromium_renders_every_panel(report: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (.ci/run installs it: apt-get install chromium)"
    url = (report / "index.html").as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, *profile, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert dom.count('class="panel"') == sum(len(b.panels) for b in DASHBOARDS.values())
    assert dom.count("<svg") >= 15
    shot = tmp_path / "page.png"
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            *profile,
            f"--screenshot={shot}",
            "--window-size=1600,3000",
            url,
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert shot.read_bytes().startswith(PNG_MAGIC) and shot.stat().st_size > 50_000


DRAW_A_NAME = """
import sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo
import vl_convert as vlc
from clickpulse_grafana import charts
from clickpulse_grafana.dashboards import DASHBOARDS
from clickpulse_grafana.display import show
from clickpulse_grafana.report import drawable

panels = DASHBOARDS["business"].to_json()["panels"]
panel = next(p for p in panels if p["title"] == "Most viewed products")
name = sys.argv[1].encode().decode("unicode_escape")
rows = [tuple(drawable(v) for v in (name, "home", 30)), ("Desk", "office", 12)]
view = show(panel, ["product", "category", "views"], rows, ZoneInfo("UTC"))
span = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
svg = vlc.vegalite_to_svg(charts.themed(charts.chart(panel, view, "UTC", span)).to_json())
print("\\ufffd" in svg)
"""


@pytest.mark.no_stack
@pytest.mark.parametrize("name", [r"Lamp\x00", r"Lamp\x1b[31m", r"Lamp\ud800"])
def test_a_name_with_control_characters_is_drawn(name: str) -> None:
    """Clients choose product names (the fuzzer sends NULs and escapes): a C0 character made
    vl-convert panic and end the whole report process. Run apart, as that abort would end
    pytest too."""
    result = subprocess.run(
        [sys.executable, "-c", DRAW_A_NAME, name], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "True"


@pytest.mark.no_stack
def test_an_hour_on_a_full_width_time_axis_is_labelled_every_5_minutes() -> None:
    """As Grafana steps it: Vega's own ticks fell every minute on this full-width panel, and
    the hour's 60 labels ran together ("15:2315:24...")."""
    panels = DASHBOARDS["overview"].to_json()["panels"]
    panel = next(p for p in panels if p["title"] == "Refused requests per second")
    assert panel["gridPos"]["w"] == 24
    start = datetime(2026, 11, 30, 15, 55, tzinfo=UTC)
    span = (start, start + timedelta(hours=1))
    rows = [(start + timedelta(minutes=m), 0.0, 0.0, 0.1 * m, 0.0) for m in range(60)]
    columns = ["time", "unauthorized", "forbidden", "rate_limited", "shed"]
    view = show(panel, columns, rows, ZoneInfo("UTC"))
    svg = vlc.vegalite_to_svg(charts.themed(charts.chart(panel, view, "UTC", span)).to_json())
    ticks = re.findall(r">(\d\d:\d\d)</text>", svg)
    assert len(ticks) == 13, ticks
    assert {t[-1] for t in ticks} <= {"0", "5"}


@pytest.mark.no_stack
def test_a_bucket_that_starts_before_the_range_is_clipped_as_in_grafana() -> None:
    """A series' first bucket starts before the range does (the filled series always have
    one): its point was drawn left of the y axis, over the axis labels."""
    panels = DASHBOARDS["overview"].to_json()["panels"]
    panel = next(p for p in panels if p["title"] == "Requests per second by service")
    start = datetime(2026, 11, 30, 15, 55, 30, tzinfo=UTC)
    span = (start, start + timedelta(minutes=10))
    first = start.replace(second=0)
    rows = [(first + timedelta(minutes=m), "crud-api", float(m)) for m in range(11)]
    view = show(panel, ["time", "service_name", "rps"], rows, ZoneInfo("UTC"))
    svg = vlc.vegalite_to_svg(charts.themed(charts.chart(panel, view, "UTC", span)).to_json())
    # Vega clips a mark to the plot with a clip path on its group.
    assert svg.count("clip-path=") >= 2, "the line and its points are not clipped"
