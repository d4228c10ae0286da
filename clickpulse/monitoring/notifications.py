"""Where alert state changes go: a JSON-lines log of every transition (the drills' timeline,
`nox -s status`), and, for firing and resolved alerts, a webhook in the shape Grafana's webhook
contact point posts (Alertmanager's payload plus Grafana's `state`, `title`, `message`), so a
receiver written for Grafana works with the local monitor too."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from clickpulse.monitoring.evaluation import Transition, format_value
from clickpulse.monitoring.rules import RULES, Rule

TRANSITIONS_FILE = "alert-events.jsonl"
STATE_FILE = "alerts.json"
RECEIVER = "clickpulse-webhook"
# Alertmanager's "no end yet".
NO_END = "0001-01-01T00:00:00Z"


def append_transitions(directory: Path, transitions: Iterable[Transition]) -> None:
    lines = [json.dumps(t.to_json()) + "\n" for t in transitions]
    if not lines:
        return
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / TRANSITIONS_FILE).open("a") as log:
        log.writelines(lines)


def read_transitions(directory: Path, since_epoch: float = 0.0) -> list[dict[str, Any]]:
    path = directory / TRANSITIONS_FILE
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("at_epoch", 0) >= since_epoch:
            events.append(event)
    return events


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _alert(rule: Rule, t: Transition) -> dict[str, Any]:
    firing = t.after == "firing"
    labels = {
        "alertname": rule.title,
        "grafana_folder": "clickpulse",
        "rule_uid": rule.uid,
        "severity": rule.severity,
        **dict(t.labels),
    }
    return {
        "status": "firing" if firing else "resolved",
        "labels": labels,
        "annotations": {
            "summary": rule.summary,
            # The value, also when it was read from the collector while ClickHouse was away;
            # the error only when there is no value (ClickHouse unreachable).
            "value": format_value(rule, t.value) if t.value is not None else (t.error or "-"),
        },
        "startsAt": _iso(t.at),
        "endsAt": NO_END if firing else _iso(t.at),
        "values": {"A": t.value},
        "fingerprint": f"{abs(hash((rule.uid, t.labels))):016x}",
    }


def webhook_payload(transitions: Sequence[Transition]) -> dict[str, Any] | None:
    """One notification for the transitions that notify (to firing, or from firing to ok)."""
    by_uid = {r.uid: r for r in RULES}
    notify = [
        t
        for t in transitions
        if t.uid in by_uid and (t.after == "firing" or (t.before == "firing" and t.after == "ok"))
    ]
    if not notify:
        return None
    alerts = [_alert(by_uid[t.uid], t) for t in notify]
    firing = [a for a in alerts if a["status"] == "firing"]
    status = "firing" if firing else "resolved"
    title = f"[{status.upper()}:{len(firing) or len(alerts)}] " + ", ".join(
        sorted({a["labels"]["alertname"] for a in alerts})
    )
    return {
        "receiver": RECEIVER,
        "status": status,
        "state": "alerting" if firing else "ok",
        "title": title,
        "message": "\n".join(
            f"{a['status']}: {a['labels']['alertname']} ({a['annotations']['value']})"
            for a in alerts
        ),
        "alerts": alerts,
        "groupLabels": {"grafana_folder": "clickpulse"},
        "commonLabels": {"grafana_folder": "clickpulse"},
        "commonAnnotations": {},
        "externalURL": "",
        "version": "1",
        "groupKey": '{}:{grafana_folder="clickpulse"}',
        "truncatedAlerts": 0,
        "orgId": 1,
    }


def post_webhook(url: str, payload: dict[str, Any], timeout_s: float = 5.0) -> None:
    response = httpx.post(url, json=payload, timeout=timeout_s)
    response.raise_for_status()


def notify(
    directory: Path, webhook_url: str | None, transitions: Sequence[Transition]
) -> list[str]:
    """Records the transitions (JSON lines), posts the ones that notify to the webhook, and
    returns a line per transition for the log (a failed post is one more line, not an error:
    the next transition is posted all the same)."""
    append_transitions(directory, transitions)
    by_uid = {r.uid: r for r in RULES}
    lines = []
    for t in transitions:
        labels = ",".join(f"{k}={v}" for k, v in t.labels)
        value = format_value(by_uid[t.uid], t.value) if t.uid in by_uid else str(t.value)
        lines.append(
            f"{t.title}{f' [{labels}]' if labels else ''}: {t.before} -> {t.after} ({value})"
            + (f"; {t.error}" if t.error else "")
        )
    payload = webhook_payload(transitions)
    if payload and webhook_url:
        try:
            post_webhook(webhook_url, payload)
        except Exception as exc:
            lines.append(f"webhook {webhook_url} failed: {exc}")
    return lines
