"""Evaluating the rules as Grafana does, without Grafana.

Each evaluation runs a rule's SQL over its window ending now and compares every instance's
value with the threshold. An instance is *ok*, *pending* (breaching for less than `for_s`) or
*firing*; "for" needs state across evaluations, which the `Evaluator` keeps (the monitor
process evaluates every group's interval and saves it, `nox -s alerts` starts from that file).

Without such state (a cold start, or state older than three intervals) the evaluator asks the
rule's SQL what it said one interval ago, two intervals ago, ... until the breach began or
`for_s` is covered, because the rules are written against the window's end, not now(): the
first answer is then the one Grafana would give if it had been evaluating all along (up to data
that arrived late), but not past `not_before`, when the stack came up: while it was down, Grafana
(which runs with it) was not evaluating either, and a stack stopped on purpose is no outage.
Replayed over a `nox -s down` of a minute, "Collector unreachable" fired at the first evaluation
of every `nox -s up` (its last report was from before the stop). States saved before then are
not taken over either. (A silence itself is counted from ClickHouse's start at most in the
rule's SQL, `rules.silence_s`, so Grafana counts it so too.) A rule that breaches on an error
(ClickHouse unreachable) or reads the collector live has no history: it starts pending.

When ClickHouse does not answer, the rules keep their last state and say why (Grafana's
KeepLast), except the rule whose error is the alert, and the queue-backlog rule, which then
reads the collector's own Prometheus endpoint (clickpulse.monitoring.collector_live). After the
first connection failure in a round, the other rules do not wait for their own timeouts. An
alert whose row is missing resolves at the second evaluation without it, as in Grafana."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from clickpulse_grafana.macros import TimeRange, expand_backend

from clickpulse.monitoring.rules import RULES, Rule

StateName = Literal["ok", "pending", "firing"]
Labels = tuple[tuple[str, str], ...]
# SQL in, (column names, rows) out; raises when ClickHouse cannot answer.
Query = Callable[[str], tuple[list[str], list[tuple[Any, ...]]]]
# The live value of a rule's fallback source, per instance; raises when it cannot be read.
LiveRead = Callable[[str], dict[Labels, float]]

STALE_AFTER_INTERVALS = 3
# Grafana's missing_series_evals_to_resolve (default 2): an alert whose row is missing keeps its
# state through one evaluation and resolves at the second. Right after ClickHouse is back, the
# data of the outage is still in the collector's queue for a few seconds: without this, the
# backlog alert resolved and went pending again 10 s later as that data landed.
MISSING_EVALS_TO_RESOLVE = 2


class ClickHouseUnavailable(RuntimeError):
    """A connection-level failure: ClickHouse is down or does not answer in time."""


@dataclass
class Instance:
    labels: Labels
    state: StateName
    # When the current breach began (pending and firing), or when it ended (ok).
    since: float
    value: float | None
    # When it started firing (the breach began `for_s` or more before).
    firing_since: float | None = None
    # Evaluations in a row that returned no row for it (see MISSING_EVALS_TO_RESOLVE).
    missing: int = 0


@dataclass
class RuleStatus:
    uid: str
    evaluated_at: float
    instances: dict[str, Instance] = field(default_factory=dict)
    # Why the last evaluation could not read the rule's data (the state is then the last known).
    error: str | None = None
    source: Literal["clickhouse", "live", "kept"] = "clickhouse"


@dataclass(frozen=True)
class Transition:
    at: float
    uid: str
    title: str
    labels: Labels
    before: StateName
    after: StateName
    value: float | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": datetime.fromtimestamp(self.at, UTC).isoformat(timespec="milliseconds"),
            "at_epoch": self.at,
            "rule": self.uid,
            "title": self.title,
            "labels": dict(self.labels),
            "from": self.before,
            "to": self.after,
            "value": self.value,
            "error": self.error,
        }


def instance_key(labels: Labels) -> str:
    return json.dumps(dict(labels), sort_keys=True)


def rule_sql(rule: Rule, at: float) -> str:
    """The rule's SQL as the ClickHouse plugin sends it for an evaluation at `at`."""
    end = datetime.fromtimestamp(at, UTC)
    start = datetime.fromtimestamp(at - rule.window_s, UTC)
    return expand_backend(rule.sql, TimeRange(start, end))


def observe(rule: Rule, query: Query, at: float) -> dict[Labels, float]:
    """The rule's instances and values at `at`: String columns are labels, `value` the value
    (NULL or NaN is no value: that instance has no data)."""
    columns, rows = query(rule_sql(rule, at))
    if not rows:
        return {}
    if "value" not in columns:
        raise ValueError(f"{rule.uid}: the query returns no `value` column ({columns})")
    index = columns.index("value")
    observed: dict[Labels, float] = {}
    for row in rows:
        value = row[index]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        labels = tuple(
            (name, str(cell)) for name, cell in zip(columns, row, strict=True) if name != "value"
        )
        observed[labels] = float(value)
    return observed


class Evaluator:
    def __init__(
        self,
        query: Query,
        *,
        live: LiveRead | None = None,
        rules: Sequence[Rule] = RULES,
        clock: Callable[[], float] = time.time,
        not_before: float | None = None,
    ) -> None:
        self.query = query
        # Breaches are not reconstructed from before this moment (see the module's docstring).
        self.not_before = not_before
        self.live = live
        self.rules = list(rules)
        self.clock = clock
        self.status: dict[str, RuleStatus] = {}

    # --- state across processes -------------------------------------------------------------
    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({uid: asdict(s) for uid, s in self.status.items()}, indent=1))
        tmp.replace(path)

    def load(self, path: Path) -> None:
        """Takes over the states of a file another evaluator saved (stale ones are ignored
        at evaluation time, as after a restart)."""
        try:
            raw = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return
        for uid, status in raw.items():
            instances = {
                key: Instance(
                    labels=tuple((str(k), str(v)) for k, v in inst["labels"]),
                    state=inst["state"],
                    since=inst["since"],
                    value=inst["value"],
                    firing_since=inst.get("firing_since"),
                    missing=inst.get("missing", 0),
                )
                for key, inst in status["instances"].items()
            }
            self.status[uid] = RuleStatus(
                uid=uid,
                evaluated_at=status["evaluated_at"],
                instances=instances,
                error=status.get("error"),
                source=status.get("source", "clickhouse"),
            )

    # --- evaluation -------------------------------------------------------------------------
    def evaluate(self, rules: Iterable[Rule] | None = None) -> list[Transition]:
        """One round over `rules` (all by default); returns the state changes."""
        transitions: list[Transition] = []
        unavailable: str | None = None
        for rule in self.rules if rules is None else rules:
            now = self.clock()
            observed, source, error = self._observe(rule, now, unavailable)
            if error is not None and source == "kept" and unavailable is None:
                unavailable = error if error.startswith("ClickHouse unavailable") else None
            if rule.on_error == "alerting" and error is not None:
                unavailable = error
            transitions += self._advance(rule, now, observed, source, error)
        return transitions

    def _observe(
        self, rule: Rule, now: float, unavailable: str | None
    ) -> tuple[
        dict[Labels, float | None] | None, Literal["clickhouse", "live", "kept"], str | None
    ]:
        """The rule's observations now; None means keep the last state."""
        error: str | None = None
        if unavailable is None or rule.on_error == "alerting":
            try:
                observed: dict[Labels, float | None] = dict(observe(rule, self.query, now))
                return observed, "clickhouse", None
            except ClickHouseUnavailable as exc:
                error = f"ClickHouse unavailable: {exc}"
            except Exception as exc:
                error = f"query failed: {str(exc).strip().splitlines()[0][:300]}"
        else:
            error = unavailable
        if rule.on_error == "alerting":
            return {(): None}, "clickhouse", error
        if rule.live is not None and self.live is not None and error.startswith("ClickHouse"):
            try:
                return dict(self.live(rule.live)), "live", error
            except Exception as exc:
                error = f"{error}; live source failed: {exc}"
        return None, "kept", error

    def _history_start(self, rule: Rule, now: float, labels: Labels) -> float:
        """When the breach an instance shows now began, as far back as `for_s` matters, by
        evaluating the rule's SQL at earlier moments (one interval apart), none before
        `not_before`."""
        step = rule.group.interval_s
        start = now
        back = step
        while back <= rule.for_s + step:
            if self.not_before is not None and now - back < self.not_before:
                break
            try:
                earlier = observe(rule, self.query, now - back)
            except Exception:
                break
            if not rule.breaches(earlier.get(labels)):
                break
            start = now - back
            back += step
        return start

    def _advance(
        self,
        rule: Rule,
        now: float,
        observed: dict[Labels, float | None] | None,
        source: Literal["clickhouse", "live", "kept"],
        error: str | None,
    ) -> list[Transition]:
        previous = self.status.get(rule.uid)
        # A state saved before the stack came up is not carried over either: a pending breach
        # seen before a `nox -s down` went on as firing right after a quick `nox -s up`.
        fresh = (
            previous is not None
            and now - previous.evaluated_at <= STALE_AFTER_INTERVALS * rule.group.interval_s
            and (self.not_before is None or previous.evaluated_at >= self.not_before)
        )
        known: dict[str, Instance] = previous.instances if previous and fresh else {}
        status = RuleStatus(rule.uid, now, error=error, source=source)
        transitions: list[Transition] = []
        if observed is None:
            # Keep the last state (and for how long it has been so), with the reason.
            status.instances = dict(known)
            self.status[rule.uid] = status
            return transitions
        for labels, value in observed.items():
            key = instance_key(labels)
            before = known.get(key)
            was: StateName = before.state if before else "ok"
            if rule.breaches(value):
                if before is not None and before.state != "ok":
                    since = before.since
                elif before is None and source == "clickhouse" and value is not None:
                    since = self._history_start(rule, now, labels)
                else:
                    since = now
                firing_since: float | None = None
                if now - since >= rule.for_s:
                    if before is not None and before.state == "firing":
                        firing_since = before.firing_since
                    elif before is not None:
                        firing_since = now
                    else:
                        # Reconstructed: it began firing when the breach had lasted `for`.
                        firing_since = since + rule.for_s
                state: StateName = "firing" if firing_since is not None else "pending"
                instance = Instance(labels, state, since, value, firing_since)
            else:
                since = now if was != "ok" or before is None else before.since
                instance = Instance(labels, "ok", since, value)
            status.instances[key] = instance
            if instance.state != was:
                transitions.append(
                    Transition(now, rule.uid, rule.title, labels, was, instance.state, value, error)
                )
        # An alert whose row is missing resolves at its second evaluation without one.
        for key, before in known.items():
            if key in status.instances or before.state == "ok":
                continue
            if before.missing + 1 < MISSING_EVALS_TO_RESOLVE:
                status.instances[key] = replace(before, missing=before.missing + 1)
                continue
            status.instances[key] = Instance(before.labels, "ok", now, None)
            transitions.append(
                Transition(
                    now, rule.uid, rule.title, before.labels, before.state, "ok", None, error
                )
            )
        self.status[rule.uid] = status
        return transitions

    def firing(self) -> list[tuple[Rule, Instance]]:
        by_uid = {r.uid: r for r in self.rules}
        return [
            (by_uid[uid], inst)
            for uid, status in self.status.items()
            if uid in by_uid
            for inst in status.instances.values()
            if inst.state == "firing"
        ]


def format_value(rule: Rule, value: float | None) -> str:
    if value is None:
        return "-"
    if rule.unit == "ratio":
        return f"{value:.1%}"
    if rule.unit == "ms":
        return f"{value:,.0f} ms"
    if rule.unit == "s":
        return f"{value:,.1f} s"
    if rule.unit == "currency":
        return f"{value:,.2f}"
    if rule.unit == "flag":
        return f"{value:g}"
    return f"{value:,.0f}"
