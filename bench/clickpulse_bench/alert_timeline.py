"""What the monitor told during a drill: its alert transitions (`<state>/monitor/
alert-events.jsonl`), as a timeline relative to the fault, and whether the alerts a drill must
raise fired in time and resolved once the fault was over."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from clickpulse.monitoring import heartbeat
from clickpulse.monitoring.notifications import read_transitions
from clickpulse.monitoring.rules import rule
from clickpulse.stack.settings import Settings


@dataclass(frozen=True)
class Expected:
    """An alert the drill must raise within `within_s` of the fault's start."""

    uid: str
    within_s: float


@dataclass
class AlertSpan:
    """One alert instance through a drill: when it went pending, fired and resolved."""

    uid: str
    title: str
    labels: dict[str, str]
    pending_at: float | None = None
    firing_at: float | None = None
    resolved_at: float | None = None
    values: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        labels = ", ".join(f"{k}={v}" for k, v in self.labels.items())
        return self.title + (f" ({labels})" if labels else "")


@dataclass
class Timeline:
    fault_at: float
    recovered_at: float
    spans: list[AlertSpan]

    def relative(self, at: float | None) -> str:
        return "" if at is None else f"+{at - self.fault_at:.0f}s"

    def detection_s(self, uid: str) -> float | None:
        fired = [s.firing_at for s in self.spans if s.uid == uid and s.firing_at is not None]
        return min(fired) - self.fault_at if fired else None

    def unresolved(self) -> list[AlertSpan]:
        return [s for s in self.spans if s.resolved_at is None]


def require_monitor(settings: Settings) -> None:
    age = heartbeat.age(settings.monitor_dir)
    if age is None or age > 30:
        raise RuntimeError(
            "the monitor is not evaluating alert rules: start the stack with `nox -s up`"
        )


def _spans(events: Sequence[dict[str, Any]]) -> list[AlertSpan]:
    """Each episode of an alert instance: from leaving ok to being ok again."""
    spans: list[AlertSpan] = []
    open_spans: dict[tuple[str, str], AlertSpan] = {}
    for event in events:
        key = (event["rule"], repr(sorted(event["labels"].items())))
        at = float(event["at_epoch"])
        if event["to"] == "ok":
            span = open_spans.pop(key, None)
            if span is not None:
                span.resolved_at = at
            continue
        span = open_spans.get(key)
        if span is None:
            span = AlertSpan(event["rule"], event["title"], event["labels"])
            spans.append(span)
            open_spans[key] = span
        if event["value"] is not None:
            span.values.append(float(event["value"]))
        span.pending_at = span.pending_at or at
        if event["to"] == "firing" and span.firing_at is None:
            span.firing_at = at
    return spans


def timeline(settings: Settings, since: float, fault_at: float, recovered_at: float) -> Timeline:
    return Timeline(fault_at, recovered_at, _spans(read_transitions(settings.monitor_dir, since)))


def wait_until_resolved(
    settings: Settings, since: float, fault_at: float, recovered_at: float, timeout_s: float
) -> Timeline:
    """The drill's timeline once every alert it raised is ok again (or `timeout_s` passed)."""
    deadline = time.monotonic() + timeout_s
    current = timeline(settings, since, fault_at, recovered_at)
    while current.unresolved() and time.monotonic() < deadline:
        time.sleep(2)
        current = timeline(settings, since, fault_at, recovered_at)
    return current


def judge(current: Timeline, expected: Sequence[Expected]) -> list[str]:
    """What went wrong, if anything: an expected alert late or missing, one still firing."""
    problems = []
    for want in expected:
        detected = current.detection_s(want.uid)
        title = rule(want.uid).title
        if detected is None:
            problems.append(f"{title} did not fire")
        elif detected > want.within_s:
            problems.append(f"{title} fired after {detected:.0f} s (goal {want.within_s:.0f} s)")
    problems += [f"{s.name} did not resolve" for s in current.unresolved()]
    return problems
