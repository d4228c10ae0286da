"""The capacity benchmark's pure parts: when a load run holds its rate, which rate the search
probes next, and what the doc says about it. No stack is needed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clickpulse_bench import budget, report
from clickpulse_bench.capacity import Target, capacity_row, plan_for, render
from clickpulse_bench.common import free_port
from clickpulse_bench.rate_search import RateSearch, shortfalls
from clickpulse_bench.servers import ServerDidNotStart, ServicePair, wait_healthy

pytestmark = pytest.mark.no_stack

GOOD: dict[str, Any] = {
    "target_rps": 400,
    "achieved_rps": 395.0,
    "error_rate": 0.0005,
    "p95_ms": 60.0,
    "p99_ms": 140.0,
    "audit": {"sent": 12000, "landed": 12000, "missing": 0, "duplicates": 0, "abandoned": 0},
}


def test_a_run_within_every_criterion_holds() -> None:
    assert shortfalls(GOOD) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"achieved_rps": 391.9}, "achieved 391.9"),
        ({"error_rate": 0.001}, "errors"),
        ({"p95_ms": 100.0}, "p95 100 ms"),
        ({"audit": {**GOOD["audit"], "missing": 1}}, "1 requests missing"),
        ({"audit": None}, "no ingestion audit"),
        ({"p95_ms": None}, "no p95"),
        ({"achieved_rps": None}, "no achieved/target"),
        ({"error_rate": "0"}, "no error rate"),
    ],
)
def test_each_criterion_fails_a_run_on_its_own(change: dict[str, Any], reason: str) -> None:
    reasons = shortfalls({**GOOD, **change})
    assert len(reasons) == 1
    assert reason in reasons[0]


def test_an_empty_report_is_no_pass() -> None:
    assert len(shortfalls({})) == 4


def _run(search: RateSearch, holds: Callable[[float], bool]) -> list[float]:
    """Drives the search against a service that holds exactly the rates `holds` accepts."""
    rates = []
    while (rate := search.next_rate()) is not None:
        assert len(rates) < 50, "the search does not end"
        rates.append(rate)
        search.record(rate, holds(rate))
    return rates


def test_doubles_then_bisects_to_the_resolution() -> None:
    search = RateSearch(start=200, resolution=0.05)
    rates = _run(search, lambda r: r <= 630)
    assert rates == [200, 400, 800, 600, 700, 650, 625]
    assert search.capacity == 625
    assert search.lowest_failing == 650
    assert not search.capped
    assert search.path() == "200 ok, 400 ok, 800 fail, 600 ok, 700 fail, 650 fail, 625 ok"


def test_stops_once_within_resolution() -> None:
    search = RateSearch(start=200, resolution=0.05)
    _run(search, lambda r: r <= 1234)
    capacity, failing = search.capacity, search.lowest_failing
    assert capacity is not None and failing is not None
    assert capacity <= 1234 < failing
    assert failing - capacity <= 0.05 * capacity


def test_a_failing_start_halves_until_a_rate_holds() -> None:
    search = RateSearch(start=200, resolution=0.05)
    rates = _run(search, lambda r: r <= 70)
    assert rates[:3] == [200, 100, 50]
    assert search.capacity is not None and 66 <= search.capacity <= 70


def test_gives_up_below_the_floor() -> None:
    search = RateSearch(start=200, floor=10)
    assert _run(search, lambda r: False) == [200, 100, 50, 25, 12]
    assert search.capacity is None


def test_the_ceiling_caps_the_rates_and_marks_the_result() -> None:
    search = RateSearch(start=200, ceiling=300)
    assert _run(search, lambda r: True) == [200, 300]
    assert search.capacity == 300
    assert search.capped


def test_a_failure_is_confirmed_before_it_counts() -> None:
    search = RateSearch(start=200, resolution=0.34, confirm_failures=True)
    outcomes = iter([True, False, True, False, False, True])
    rates = _run(search, lambda r: next(outcomes))
    # 400 failed once then held: a fluke, so the search went on doubling.
    assert rates == [200, 400, 400, 800, 800, 600]
    assert search.lowest_failing == 800
    assert search.capacity == 600


def test_max_probes_ends_the_search() -> None:
    search = RateSearch(start=200, max_probes=3)
    assert len(_run(search, lambda r: r < 500)) == 3


def _target(code: str, search: RateSearch, overload: dict[str, Any] | None) -> Target:
    probes = [{**GOOD, "probe_rps": rate, "target_rps": rate} for rate, ok in search.probes if ok]
    pair = ServicePair("http://127.0.0.1:1", "http://127.0.0.1:2")
    return Target(code, 1, pair, search, probes=probes, overload=overload)


def test_capacity_row_relates_the_overload_run_to_the_capacity() -> None:
    search = RateSearch(start=200)
    _run(search, lambda r: r <= 400)
    overload = {
        "target_rps": 800.0,
        "achieved_rps": 791.6,
        "goodput_rps": 520.0,
        "shed_rate": 0.3512,
        "answered_p99_ms": 240.4,
        "shed_p99_ms": 3.2,
        "shed_p99_span_ms": 1.4,
    }
    row = capacity_row(_target("abc (new)", search, overload))
    assert row["capacity req/s"] == "400"
    assert row["p95 ms at capacity"] == "60"
    assert (row["overload req/s"], row["sent req/s"]) == ("800", "792")
    assert row["goodput/capacity"] == "1.30"
    assert row["shed share"] == "0.351"
    assert (row["answered p99 ms"], row["shed p99 ms"]) == ("240", "3")
    assert row["shed p99 ms, spans"] == "1"


def test_capacity_row_without_an_overload_run_or_a_passing_rate() -> None:
    capped = RateSearch(start=200, ceiling=300)
    _run(capped, lambda r: True)
    row = capacity_row(_target("old", capped, None))
    assert row["capacity req/s"] == "≥ 300"
    assert row["goodput/capacity"] == row["shed p99 ms"] == row["shed p99 ms, spans"] == "-"
    nothing = RateSearch(start=40, floor=10)
    _run(nothing, lambda r: False)
    assert capacity_row(_target("old", nothing, None))["capacity req/s"] == "< 10"
    skipped = _target("old", RateSearch(start=200, max_probes=0), None)
    skipped.note = "not measured: no sign-in"
    assert capacity_row(skipped)["capacity req/s"] == "- (not measured: no sign-in)"


def test_the_box_table_gives_each_process_tree_its_median_and_the_whole_box() -> None:
    from clickpulse_bench.overhead import _box_rows

    def probe(service: float, clickhouse: float) -> dict[str, float]:
        return {"rps": 1.0, "box_us:service": service, "box_us:clickhouse": clickhouse}

    results = {
        "GET /a": {
            "off": [probe(300, 10), probe(310, 30), probe(900, 20)],
            "on": [probe(340, 50), probe(350, 40), probe(330, 60)],
        }
    }
    rows = _box_rows(results)
    assert [row["process (tree)"] for row in rows] == ["service", "clickhouse", "whole box"]
    assert rows[0] == {"process (tree)": "service", "GET /a off": 310, "GET /a on": 340}
    assert (rows[1]["GET /a off"], rows[1]["GET /a on"]) == (20, 50)
    # The whole box's median is over each probe's total, not a sum of the medians.
    assert (rows[2]["GET /a off"], rows[2]["GET /a on"]) == (340, 390)


def test_the_fixed_rate_row_reads_telemetrys_cost_from_the_service_and_its_relay() -> None:
    from clickpulse_bench.overhead import FIXED_RATE, _fixed_rate_row

    def probe(service: float, relay: float) -> dict[str, float]:
        return {"box_us:the probed service process": service, "box_us:its span relay": relay}

    row = _fixed_rate_row(
        {
            "off": [probe(500, 0), probe(520, 0), probe(900, 0)],
            "on": [probe(540, 10), probe(550, 12), probe(560, 11)],
        }
    )
    assert row == {
        "req/s": FIXED_RATE,
        "service process us/request off": 520,
        "service process us/request on": 550,
        "its span relay us/request": 11,
        # Medians, not means: the 900 us round (the box busy elsewhere) moves nothing.
        "telemetry us/request (process + relay)": 41,
        "round differences on-off min-max": "-340 to +40",
    }


def test_the_section_keeps_the_other_sections_of_the_doc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## 1. Ingest\n\nold one\n\n## 6. Capacity\n\nstale\n")
    monkeypatch.setattr(report, "DOC", doc)
    search = RateSearch(start=200, max_probes=1)
    _run(search, lambda r: True)
    section = render(plan_for(quick=True), [_target("abc", search, None)], [], "\n\nCommand.")
    assert section.startswith("## 6. Capacity\n")
    report.write_doc("nox -s bench -- --only capacity", {"Python": "3.11"}, {"6": section})
    text = doc.read_text()
    assert "old one" in text
    assert "stale" not in text
    assert text.index("## 1. Ingest") < text.index("## 6. Capacity")
    assert "| abc | 1 | 200 |" in text


def _event(rule: str, to: str, at: float, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "rule": rule,
        "title": rule,
        "labels": labels or {},
        "to": to,
        "at_epoch": at,
        "value": 1.0,
    }


def test_the_drill_timeline_has_an_episode_per_alert_and_judges_detection() -> None:
    from clickpulse_bench.alert_timeline import Expected, Timeline, _spans, judge

    unreachable = "clickpulse-clickhouse-unreachable"
    backlog = "clickpulse-collector-backlog"
    events = [
        _event(unreachable, "pending", 108),
        _event(backlog, "pending", 118, {"signal": "traces"}),
        _event(unreachable, "firing", 129),
        _event(backlog, "firing", 129, {"signal": "traces"}),
        _event(unreachable, "ok", 169),
        _event(backlog, "ok", 169, {"signal": "traces"}),
        # A second episode of the same alert is its own line.
        _event(backlog, "pending", 179, {"signal": "traces"}),
    ]
    spans = _spans(events)
    assert [(s.uid, s.pending_at, s.firing_at, s.resolved_at) for s in spans] == [
        (unreachable, 108, 129, 169),
        (backlog, 118, 129, 169),
        (backlog, 179, None, None),
    ]
    timeline = Timeline(fault_at=100, recovered_at=160, spans=spans)
    assert timeline.detection_s(unreachable) == 29
    assert timeline.relative(129) == "+29s"
    problems = judge(
        timeline, [Expected(unreachable, within_s=60), Expected("clickpulse-5xx-share", 120)]
    )
    assert problems == [
        "Server errors (5xx share) did not fire",
        "clickpulse-collector-backlog (signal=traces) did not resolve",
    ]
    late = judge(Timeline(100, 160, spans[:2]), [Expected(unreachable, within_s=20)])
    assert late == ["ClickHouse unreachable fired after 29 s (goal 20 s)"]


def test_the_drills_doc_has_every_timeline_column_even_for_a_quiet_drill() -> None:
    from clickpulse_bench.alert_timeline import AlertSpan, Timeline
    from clickpulse_bench.drills import DrillResult, _doc_section, _timeline_rows
    from clickpulse_load.audit import Audit

    quiet = DrillResult("collector killed", Audit(sent=10, landed=10))
    quiet.timeline = Timeline(fault_at=100, recovered_at=110, spans=[])
    loud = DrillResult("ClickHouse stopped", Audit(sent=10, landed=10))
    span = AlertSpan("clickpulse-clickhouse-unreachable", "ClickHouse unreachable", {})
    span.pending_at, span.firing_at, span.resolved_at = 105, 125, 175
    loud.timeline = Timeline(fault_at=100, recovered_at=160, spans=[span])
    rows = _timeline_rows([quiet, loud])
    doc = _doc_section(50, [quiet, loud], rows)
    assert "| drill | alert | pending | firing | resolved | fault ended |" in doc
    assert "| collector killed | (none) |  |  |  | +10s |" in doc
    assert "| ClickHouse stopped | ClickHouse unreachable | +5s | +25s | +75s | +60s |" in doc


def test_the_budget_estimate_divides_the_usable_cores_by_the_cost_per_request() -> None:
    rows = [
        {"component": "crud-api", "% of a core": 30.0, "CPU ms per request": 1.5},
        {"component": "k6 (the load generator)", "% of a core": 16.0, "CPU ms per request": 0.8},
        {"component": "postgres", "% of a core": 14.0, "CPU ms per request": 0.7},
        {"component": "all", "% of a core": 60.0, "CPU ms per request": 3.0},
    ]
    # 2 cores x 85 % = 1,700 ms of CPU a second, over 3.0 ms (the "all" row is not counted twice).
    assert budget.estimate(rows, 2, k6_elsewhere=False) == 566
    assert budget.estimate(rows, 2, k6_elsewhere=True) == 772
    assert budget.estimate(rows, 8, k6_elsewhere=True) == 3090


def test_a_bench_server_that_exits_fails_its_start_saying_why(tmp_path: Path) -> None:
    """An old checkout's service that cannot import its app (a dependency this venv lacks)
    fails its start as exited, with the log's last line, instead of being polled until the
    tries run out."""
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-c", "import no_such_module_here"], stdout=output, stderr=output
        )
    server.wait()
    with pytest.raises(ServerDidNotStart, match="exited with 1") as failed:
        wait_healthy(f"http://127.0.0.1:{free_port()}", server=server, log=log)
    assert failed.value.why == "ModuleNotFoundError: No module named 'no_such_module_here'"
