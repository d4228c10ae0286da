"""The four dashboards (Overview, Performance, Business, Pipeline). `python -m clickpulse_grafana
build` writes grafana/dashboards/*.json; a test checks the committed JSON is exactly what the
code generates. The panel model is panel_model, the SQL they share sql_fragments, and each
dashboard its own module."""

from __future__ import annotations

import json
from pathlib import Path

from clickpulse_grafana.business import BUSINESS
from clickpulse_grafana.overview import OVERVIEW
from clickpulse_grafana.panel_model import DATASOURCE, Dashboard, Panel
from clickpulse_grafana.performance import PERFORMANCE
from clickpulse_grafana.pipeline import PIPELINE

__all__ = [
    "ALERTING_FILE",
    "DASHBOARDS",
    "DASHBOARDS_DIR",
    "DATASOURCE",
    "Dashboard",
    "Panel",
    "build",
    "render",
]

DASHBOARDS_DIR = Path(__file__).resolve().parent.parent / "dashboards"
ALERTING_FILE = (
    Path(__file__).resolve().parent.parent / "provisioning" / "alerting" / "clickpulse.yaml"
)
DASHBOARDS = {
    "overview": OVERVIEW,
    "performance": PERFORMANCE,
    "business": BUSINESS,
    "pipeline": PIPELINE,
}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name].to_json(), indent=2, sort_keys=True) + "\n"


def build(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in DASHBOARDS:
        path = directory / f"{name}.json"
        path.write_text(render(name))
        written.append(path)
    if directory == DASHBOARDS_DIR:
        # The alert rules as Grafana provisioning, from the same source as `nox -s alerts`.
        from clickpulse_grafana import alerting

        ALERTING_FILE.parent.mkdir(parents=True, exist_ok=True)
        ALERTING_FILE.write_text(alerting.render())
        written.append(ALERTING_FILE)
    return written
