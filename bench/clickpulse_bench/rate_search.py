"""The capacity benchmark's decisions, kept apart from anything that runs a process: does a load
run hold its rate, and which rate to probe next. tests/test_bench.py covers them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Criteria:
    """What "holds the rate" means for the mixed scenario."""

    min_achieved_share: float = 0.98
    max_error_rate: float = 0.001
    max_p95_ms: float = 100.0


CRITERIA = Criteria()


def _number(facts: Mapping[str, Any], key: str) -> float | None:
    value = facts.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def shortfalls(facts: Mapping[str, Any], criteria: Criteria = CRITERIA) -> list[str]:
    """Why a run (the load runner's --json facts) did not hold its target; empty when it did.
    A fact the report lacks counts as a shortfall: a probe we cannot judge is not a pass."""
    reasons: list[str] = []
    target = _number(facts, "target_rps")
    achieved = _number(facts, "achieved_rps")
    if target is None or achieved is None or target <= 0:
        reasons.append("no achieved/target rate in the report")
    elif achieved < criteria.min_achieved_share * target:
        reasons.append(f"achieved {achieved:.1f} < {criteria.min_achieved_share:.0%} of {target:g}")
    error_rate = _number(facts, "error_rate")
    if error_rate is None:
        reasons.append("no error rate in the report")
    elif error_rate >= criteria.max_error_rate:
        reasons.append(f"errors {error_rate:.2%} >= {criteria.max_error_rate:.1%}")
    p95 = _number(facts, "p95_ms")
    if p95 is None:
        reasons.append("no p95 in the report")
    elif p95 >= criteria.max_p95_ms:
        reasons.append(f"p95 {p95:.0f} ms >= {criteria.max_p95_ms:g} ms")
    audit = facts.get("audit")
    missing = _number(audit, "missing") if isinstance(audit, Mapping) else None
    if missing is None:
        reasons.append("no ingestion audit in the report")
    elif missing > 0:
        reasons.append(f"{missing:.0f} requests missing in ClickHouse")
    return reasons


@dataclass
class RateSearch:
    """The highest rate that holds: from `start`, multiply by `factor` until a probe fails, then
    bisect between the highest rate that held and the lowest that failed until they are within
    `resolution` of each other. Below `floor` it gives up (capacity None).

    With `confirm_failures`, a rate fails only when two probes at it fail: on a box shared with
    other work one bad probe early in the search would otherwise halve the result, while a pass
    (four criteria met for the whole probe) is hard to get by luck, so one pass is enough.
    """

    start: float = 200.0
    factor: float = 2.0
    resolution: float = 0.05
    floor: float = 10.0
    ceiling: float | None = None
    max_probes: int | None = None
    confirm_failures: bool = False
    probes: list[tuple[float, bool]] = field(default_factory=list)

    def record(self, rate: float, holds: bool) -> None:
        self.probes.append((rate, holds))

    def _failures_needed(self) -> int:
        return 2 if self.confirm_failures else 1

    def _passed(self, rate: float) -> bool:
        return any(r == rate and ok for r, ok in self.probes)

    def _failed(self, rate: float) -> bool:
        fails = sum(1 for r, ok in self.probes if r == rate and not ok)
        return not self._passed(rate) and fails >= self._failures_needed()

    @property
    def lowest_failing(self) -> float | None:
        failed = [r for r, _ in self.probes if self._failed(r)]
        return min(failed) if failed else None

    @property
    def capacity(self) -> float | None:
        """The highest rate that held below the lowest rate that failed."""
        limit = self.lowest_failing
        held = [r for r, ok in self.probes if ok and (limit is None or r < limit)]
        return max(held) if held else None

    @property
    def capped(self) -> bool:
        """The search stopped at the ceiling without a failure: the capacity is at least this."""
        return self.ceiling is not None and self.capacity == self.ceiling

    def next_rate(self) -> float | None:
        """The rate to probe next, or None when the search is over."""
        if self.max_probes is not None and len(self.probes) >= self.max_probes:
            return None
        if not self.probes:
            return self._clamp(self.start)
        last, last_ok = self.probes[-1]
        if not last_ok and not self._failed(last) and not self._passed(last):
            return last  # confirm the failure before believing it
        low, high = self.capacity, self.lowest_failing
        if high is None:
            assert low is not None  # every probe so far held
            if self.ceiling is not None and low >= self.ceiling:
                return None
            return self._clamp(low * self.factor)
        if low is None:
            lower = round(high / self.factor)
            return lower if lower >= self.floor else None
        if high - low <= self.resolution * low:
            return None
        middle = round((low + high) / 2)
        return middle if low < middle < high else None

    def _clamp(self, rate: float) -> float:
        rate = float(round(rate))
        return min(rate, self.ceiling) if self.ceiling is not None else rate

    def path(self) -> str:
        """The probes in order, for the report: `200 ok, 400 fail, 300 ok`."""
        return ", ".join(f"{r:g} {'ok' if ok else 'fail'}" for r, ok in self.probes)
