"""The evaluator's pending/firing semantics on scripted data (no stack): Grafana's `for`, a cold
start reconstructed from the rules' own SQL, KeepLast while ClickHouse is away, the rule whose
error is the alert, the collector's live fallback, and the webhook's payload."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from clickpulse.monitoring.evaluation import ClickHouseUnavailable, Evaluator, Labels
from clickpulse.monitoring.notifications import webhook_payload
from clickpulse.monitoring.rules import Group, Rule, rule
from clickpulse.stack.processes import stack_up_since

pytestmark = pytest.mark.no_stack

T0 = 1_800_000_000.0
SQL_END = re.compile(r"toDateTime\((\d+)\)\)?\s*(?:AND|$|\n)")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def scripted(values: Callable[[float], dict[str, float] | None]) -> Callable[[str], Any]:
    """A fake ClickHouse: the value per label at the window's end the SQL asks about (the
    largest toDateTime(...) in it); None raises ClickHouseUnavailable."""

    def query(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        end = max(int(x) for x in re.findall(r"toDateTime\((\d+)\)", sql))
        answer = values(float(end))
        if answer is None:
            raise ClickHouseUnavailable("Connection refused")
        if not answer:
            return [], []
        if list(answer) == [""]:
            return ["value"], [(answer[""],)]
        return ["service", "value"], [(k, v) for k, v in answer.items()]

    return query


FIVE_XX = Rule(
    uid="test-5xx",
    title="5xx",
    group=Group("test", 15),
    sql="SELECT service, 0.0 AS value FROM t WHERE $__timeFilter(ts) GROUP BY service",
    window_s=60,
    condition=">",
    threshold=0.05,
    for_s=30,
    unit="ratio",
    severity="critical",
    summary="test",
)


def run(evaluator: Evaluator, clock: Clock, until: float, step: float) -> list[tuple[float, str]]:
    """Evaluates every `step` seconds up to `until`; the (time, new state) of each change."""
    changes = []
    while clock.now <= until:
        for t in evaluator.evaluate():
            changes.append((t.at - T0, t.after))
        clock.now += step
    return changes


def test_a_breach_is_pending_then_firing_after_for_then_resolves() -> None:
    clock = Clock()
    # Breaching from T0+20 to T0+100.
    query = scripted(lambda end: {"crud-api": 0.5 if T0 + 20 <= end < T0 + 100 else 0.0})
    evaluator = Evaluator(query, rules=[FIVE_XX], clock=clock)
    changes = run(evaluator, clock, T0 + 150, 15)
    # Seen breaching at 30 (pending); 30 s later, at 60, firing; ok at the first look after 100.
    assert changes == [(30, "pending"), (60, "firing"), (105, "ok")]


def test_a_cold_start_finds_when_the_breach_began_in_the_rules_own_data() -> None:
    clock = Clock()
    clock.now = T0 + 200
    query = scripted(lambda end: {"crud-api": 0.5 if end >= T0 + 150 else 0.0})
    evaluator = Evaluator(query, rules=[FIVE_XX], clock=clock)
    (transition,) = evaluator.evaluate()
    # Breaching at 200, 185, 170, 155 (not 140): it began by 155, 45 s ago > for (30 s).
    assert transition.after == "firing"
    instance = next(iter(evaluator.status["test-5xx"].instances.values()))
    assert instance.since == T0 + 155
    assert instance.firing_since == T0 + 185


def test_a_cold_start_does_not_replay_a_breach_from_before_the_stack_came_up() -> None:
    # Breaching since T0 + 100 (the collector's last report was before a `nox -s down`); the
    # stack came up again at T0 + 190. Replayed past that, it would be firing at once.
    clock = Clock()
    clock.now = T0 + 200
    query = scripted(lambda end: {"crud-api": 0.5 if end >= T0 + 100 else 0.0})
    replayed = Evaluator(query, rules=[FIVE_XX], clock=clock)
    assert [t.after for t in replayed.evaluate()] == ["firing"]
    evaluator = Evaluator(query, rules=[FIVE_XX], clock=clock, not_before=T0 + 190)
    assert [t.after for t in evaluator.evaluate()] == ["pending"]
    instance = next(iter(evaluator.status["test-5xx"].instances.values()))
    assert instance.since == T0 + 200
    # Still breaching: it fires once the breach has lasted `for` since the stack came up.
    clock.now += 15
    assert run(evaluator, clock, T0 + 245, 15) == [(230, "firing")]


def test_a_state_saved_before_the_stack_came_up_is_not_taken_over(tmp_path: Path) -> None:
    # Pending since T0 (the collector stopped first), saved; `nox -s down`, `nox -s up` at T0 + 40.
    clock = Clock()
    query = scripted(lambda end: {"crud-api": 0.5})
    before = Evaluator(query, rules=[FIVE_XX], clock=clock, not_before=T0)
    assert [t.after for t in before.evaluate()] == ["pending"]
    before.save(tmp_path / "alerts.json")
    clock.now = T0 + 45
    kept = Evaluator(query, rules=[FIVE_XX], clock=clock)
    kept.load(tmp_path / "alerts.json")
    assert [t.after for t in kept.evaluate()] == ["firing"]  # 45 s pending > for (30 s)
    after = Evaluator(query, rules=[FIVE_XX], clock=clock, not_before=T0 + 40)
    after.load(tmp_path / "alerts.json")
    assert [t.after for t in after.evaluate()] == ["pending"]
    assert next(iter(after.status["test-5xx"].instances.values())).since == T0 + 45


def test_the_stack_is_up_since_its_oldest_live_recorded_process(tmp_path: Path) -> None:
    me = psutil.Process()
    parent = me.parent()
    assert parent is not None
    for name, proc in (("crud-api", me), ("clickhouse", parent)):
        record = {"pid": proc.pid, "create_time": proc.create_time()}
        (tmp_path / f"{name}.pid").write_text(json.dumps(record))
    # A pid recorded for a process long gone, now someone else's: not part of the stack.
    (tmp_path / "collector.pid").write_text(json.dumps({"pid": me.pid, "create_time": 1.0}))
    assert stack_up_since(tmp_path) == min(me.create_time(), parent.create_time())
    assert stack_up_since(tmp_path / "compose-has-none") is None


def test_a_cold_start_on_a_fresh_breach_is_pending() -> None:
    clock = Clock()
    clock.now = T0 + 200
    query = scripted(lambda end: {"crud-api": 0.5 if end >= T0 + 190 else 0.0})
    evaluator = Evaluator(query, rules=[FIVE_XX], clock=clock)
    (transition,) = evaluator.evaluate()
    assert transition.after == "pending"


def test_states_carry_over_through_the_saved_file_and_go_stale(tmp_path: Path) -> None:
    clock = Clock()
    query = scripted(lambda end: {"crud-api": 0.5 if end >= T0 else 0.0})
    first = Evaluator(query, rules=[FIVE_XX], clock=clock)
    first.evaluate()
    first.save(tmp_path / "alerts.json")
    # Another process, 20 s later: the breach is 20 s old, so still pending (not a fresh start
    # that would reconstruct it, not firing).
    clock.now += 20
    second = Evaluator(query, rules=[FIVE_XX], clock=clock)
    second.load(tmp_path / "alerts.json")
    assert second.evaluate() == []
    assert second.status["test-5xx"].instances['{"service": "crud-api"}'].since == T0
    clock.now += 15
    assert [t.after for t in second.evaluate()] == ["firing"]
    second.save(tmp_path / "alerts.json")
    # States older than three intervals are not trusted: the breach is reconstructed from the
    # data instead, as far back as `for` matters (so firing again, as a new alert).
    clock.now += 3 * 15 + 1
    third = Evaluator(query, rules=[FIVE_XX], clock=clock)
    third.load(tmp_path / "alerts.json")
    saved = json.loads((tmp_path / "alerts.json").read_text())
    assert saved["test-5xx"]["instances"]['{"service": "crud-api"}']["state"] == "firing"
    assert [t.after for t in third.evaluate()] == ["firing"]
    since = third.status["test-5xx"].instances['{"service": "crud-api"}'].since
    assert T0 <= since <= clock.now - FIVE_XX.for_s


def test_clickhouse_away_keeps_the_last_state_and_says_why() -> None:
    clock = Clock()
    up = {"value": True}
    query = scripted(lambda end: {"crud-api": 0.5} if up["value"] else None)
    evaluator = Evaluator(query, rules=[FIVE_XX], clock=clock)
    run(evaluator, clock, T0 + 45, 15)
    assert evaluator.status["test-5xx"].instances['{"service": "crud-api"}'].state == "firing"
    up["value"] = False
    assert evaluator.evaluate() == []
    status = evaluator.status["test-5xx"]
    assert status.source == "kept" and "ClickHouse unavailable" in (status.error or "")
    assert status.instances['{"service": "crud-api"}'].state == "firing"


def test_the_unreachable_rule_fires_on_the_error_and_the_others_do_not_wait() -> None:
    clock = Clock()
    calls: list[str] = []
    down = {"value": False}

    def query(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        calls.append(sql)
        if down["value"]:
            raise ClickHouseUnavailable("timed out")
        return ["value"], [(0.0,)]

    unreachable = rule("clickpulse-clickhouse-unreachable")
    evaluator = Evaluator(query, rules=[unreachable, FIVE_XX], clock=clock)
    assert evaluator.evaluate() == []
    down["value"] = True
    calls.clear()
    clock.now += 10
    changes = run(evaluator, clock, T0 + 30, 10)
    # Down from T0+10: pending at 10, firing 20 s later (its `for`).
    assert changes == [(10, "pending"), (30, "firing")]
    # One query per round: the 5xx rule is not sent to a ClickHouse that just failed.
    assert all("toFloat64(0)" in sql for sql in calls)
    down["value"] = False
    clock.now += 10
    assert [t.after for t in evaluator.evaluate()] == ["ok"]


def test_the_queue_rule_reads_the_collector_while_clickhouse_is_away() -> None:
    clock = Clock()
    backlog = rule("clickpulse-collector-backlog")
    live_calls: list[str] = []

    def live(source: str) -> dict[Labels, float]:
        live_calls.append(source)
        return {(("signal", "traces"),): 12.0 + clock.now - T0}

    def query(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        raise ClickHouseUnavailable("Connection refused")

    evaluator = Evaluator(query, live=live, rules=[backlog], clock=clock)
    changes = run(evaluator, clock, T0 + 30, backlog.group.interval_s)
    # 12 s of data at first (ok), 42 s 30 s later: firing at once (no `for`: 15 s of data
    # waiting is already a breach that lasted).
    assert backlog.for_s == 0
    assert changes == [(30, "firing")]
    assert evaluator.status[backlog.uid].source == "live"
    assert live_calls == [backlog.live] * 2


def test_an_alert_whose_row_is_missing_resolves_at_the_second_evaluation() -> None:
    clock = Clock()
    query = scripted(lambda end: {"shop": 0.5 if end >= T0 else 0.0} if end < T0 + 60 else {})
    evaluator = Evaluator(query, rules=[FIVE_XX], clock=clock)
    changes = run(evaluator, clock, T0 + 90, 15)
    # Missing at 60 (kept firing: the data may be late), resolved at the second miss, 75.
    assert changes == [(0, "pending"), (30, "firing"), (75, "ok")]


def test_the_webhook_payload_is_grafanas_for_firing_and_resolved_only() -> None:
    clock = Clock()
    query = scripted(lambda end: {"crud-api": 0.5 if T0 <= end < T0 + 60 else 0.0})
    evaluator = Evaluator(query, rules=[rule("clickpulse-5xx-share")], clock=clock)
    pending = evaluator.evaluate()
    assert webhook_payload(pending) is None  # pending does not notify
    clock.now += 30
    firing = webhook_payload(evaluator.evaluate())
    assert firing is not None and firing["status"] == "firing" and firing["state"] == "alerting"
    (alert,) = firing["alerts"]
    assert alert["labels"]["alertname"] == "Server errors (5xx share)"
    assert alert["labels"]["service"] == "crud-api" and alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["value"] == "50.0%"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert firing["title"] == "[FIRING:1] Server errors (5xx share)"
    clock.now += 30
    resolved = webhook_payload(evaluator.evaluate())
    assert resolved is not None and resolved["status"] == "resolved"
    assert resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
