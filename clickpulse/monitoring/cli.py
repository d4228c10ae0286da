"""`python -m clickpulse.monitoring alerts | monitor | receive`.

- `alerts` (`nox -s alerts`): evaluates every rule now against ClickHouse and prints its
  state (ok / pending / firing) with its value, for people without Grafana. It starts from the
  monitor's saved states (so "pending for 20 s" is what the monitor has seen); without them,
  from what the rules' SQL says about the last minutes. Exit code 1 when an alert fires.
- `monitor`: the stack's monitor process (clickpulse.monitoring.monitor).
- `receive --port N`: a local webhook contact point that prints what it is sent (point
  CLICKPULSE_ALERT_WEBHOOK_URL, or Grafana's contact point, at http://127.0.0.1:N/).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rich.console import Console
from rich.table import Table

from clickpulse.monitoring.clickhouse_query import ClickHouseQuery
from clickpulse.monitoring.collector_live import CollectorLive
from clickpulse.monitoring.evaluation import Evaluator, Instance, RuleStatus, format_value
from clickpulse.monitoring.notifications import STATE_FILE
from clickpulse.monitoring.rules import RULES, Rule
from clickpulse.stack.processes import stack_up_since
from clickpulse.stack.settings import Settings

console = Console()
STYLE = {"ok": "green", "pending": "yellow", "firing": "bold red"}


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m" + (f" {seconds % 60:02d}s" if seconds % 60 else "")
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def condition_text(rule: Rule) -> str:
    text = f"{rule.condition} {format_value(rule, rule.threshold)}"
    if rule.on_error == "alerting":
        text = "query fails"
    return text + (f" for {_duration(rule.for_s)}" if rule.for_s else "")


def _labels(instance: Instance) -> str:
    return ", ".join(f"{k}={v}" for k, v in instance.labels)


def _value_text(rule: Rule, instance: Instance | None, status: RuleStatus | None) -> str:
    if rule.on_error == "alerting":
        return "no answer" if status is not None and status.error else "answers"
    if instance is None:
        return "no data"
    return format_value(rule, instance.value) if instance.value is not None else "error"


def rows_of(rule: Rule, status: RuleStatus | None, now: float) -> list[dict[str, Any]]:
    """What a person needs per rule: every instance that is not ok, else the worst ok one."""
    instances = list(status.instances.values()) if status else []
    shown: list[Instance | None] = [i for i in instances if i.state != "ok"]
    if not shown:
        valued = [i for i in instances if i.value is not None]
        sign = 1.0 if rule.condition == ">" else -1.0
        # The ok instance closest to breaching; none when the rule had no data.
        shown = [max(valued, key=lambda i: sign * (i.value or 0.0))] if valued else [None]
    rows = []
    for instance in shown:
        rows.append(
            {
                "rule": rule.uid,
                "title": rule.title,
                "group": rule.group.name,
                "labels": dict(instance.labels) if instance else {},
                "state": instance.state if instance else "ok",
                "value": instance.value if instance else None,
                "value_text": _value_text(rule, instance, status),
                "condition": condition_text(rule),
                "for_s": (now - instance.since) if instance and instance.state != "ok" else None,
                "source": status.source if status else "clickhouse",
                "error": status.error if status else None,
            }
        )
    return rows


def evaluate_now(settings: Settings) -> tuple[Evaluator, float | None]:
    """Every rule evaluated once, from the monitor's states when it saved them; returns the
    evaluator and how old the monitor's states were (None: there were none)."""
    evaluator = Evaluator(
        ClickHouseQuery(settings),
        live=CollectorLive(settings.collector_metrics_url).read,
        not_before=stack_up_since(settings.run_dir),
    )
    state_file = settings.monitor_dir / STATE_FILE
    age = time.time() - state_file.stat().st_mtime if state_file.exists() else None
    evaluator.load(state_file)
    evaluator.evaluate()
    return evaluator, age


def alerts(settings: Settings, *, as_json: bool) -> int:
    evaluator, age = evaluate_now(settings)
    now = time.time()
    rows = [r for rule in RULES for r in rows_of(rule, evaluator.status.get(rule.uid), now)]
    firing = sum(r["state"] == "firing" for r in rows)
    if as_json:
        print(json.dumps(rows, indent=1, default=str))
        return 1 if firing else 0
    table = Table(
        title=f"alert rules, evaluated {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC",
        caption=(
            f"states carried over from the monitor (saved {age:.0f} s ago)"
            if age is not None and age < 60
            else "no recent monitor states: pending/firing reconstructed from the rules' data"
        ),
    )
    for column in ("state", "rule", "group", "value", "alert when", "for"):
        table.add_column(column)
    for row in rows:
        title = row["title"] + (
            f" [dim]({', '.join(f'{k}={v}' for k, v in row['labels'].items())})[/dim]"
            if row["labels"]
            else ""
        )
        value = row["value_text"]
        if row["error"]:
            kept = " (last state kept)" if row["source"] == "kept" else ""
            via = " (from the collector)" if row["source"] == "live" else ""
            value += f"{via}{kept}\n[dim]{row['error'][:120]}[/dim]"
        table.add_row(
            f"[{STYLE[row['state']]}]{row['state']}[/]",
            title,
            row["group"],
            value,
            row["condition"],
            _duration(row["for_s"]) if row["for_s"] is not None else "",
        )
    console.print(table)
    pending = sum(r["state"] == "pending" for r in rows)
    console.print(f"{firing} firing, {pending} pending, {len(RULES)} rules", highlight=False)
    return 1 if firing else 0


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.end_headers()
        try:
            payload = json.loads(body)
        except ValueError:
            print(f"not JSON: {body[:200]!r}", flush=True)
            return
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        print(f"{stamp} {payload.get('title', '?')}", flush=True)
        for alert in payload.get("alerts", []):
            labels = {
                k: v
                for k, v in alert.get("labels", {}).items()
                if k not in ("alertname", "grafana_folder", "rule_uid")
            }
            print(
                f"  {alert.get('status')}: {alert['labels'].get('alertname')} {labels}"
                f" value={alert.get('annotations', {}).get('value')}",
                flush=True,
            )

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the notifications are the output."""


def receive(host: str, port: int) -> None:
    server = ThreadingHTTPServer((host, port), _Receiver)
    print(f"listening on http://{host}:{server.server_port}/ (Ctrl-C stops)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clickpulse.monitoring", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_alerts = sub.add_parser("alerts", help="evaluate every alert rule now and print its state")
    p_alerts.add_argument("--json", action="store_true", help="one JSON object per row")
    sub.add_parser("monitor", help="the stack's monitor process")
    p_receive = sub.add_parser("receive", help="a local webhook contact point that prints")
    p_receive.add_argument("--host", default="127.0.0.1")
    p_receive.add_argument("--port", type=int, default=0, help="default: any free port")
    args = parser.parse_args(argv)
    if args.command == "monitor":
        from clickpulse.monitoring.monitor import main as monitor_main

        monitor_main([])
        return 0
    if args.command == "receive":
        receive(args.host, args.port)
        return 0
    return alerts(Settings.from_env(), as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
