"""The capacity benchmark's pure decisions: when a load run holds its rate, and which rate the
search probes next. No process is started."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from clickpulse_bench.rate_search import RateSearch, shortfalls

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
