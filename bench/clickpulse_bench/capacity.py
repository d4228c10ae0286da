"""Section 6: capacity. The highest rate the mixed scenario (load/config.yaml, `nox -s load`)
holds against the whole local stack, what is left of it at twice that rate, and the service CPU
per request; for the code as it was when issue 11 was filed (a git worktree of OLD_COMMIT,
its services on free ports) beside this checkout, and for 1 and 2 worker processes.

Development knobs (environment), so a smoke run stays light on a shared box:
CLICKPULSE_BENCH_MAX_RPS caps every rate this section offers (the overload run included), and
CLICKPULSE_BENCH_START_RPS moves the search's first rate (200)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from clickpulse_load.config import DEFAULT_CONFIG

from clickpulse.stack.clickhouse_client import admin_client
from clickpulse.stack.settings import Settings
from clickpulse_bench.common import console, free_port
from clickpulse_bench.overhead import OVERHEAD_TARGETS, crud_processes, probe_rounds
from clickpulse_bench.rate_search import CRITERIA, RateSearch, shortfalls
from clickpulse_bench.report import md_table
from clickpulse_bench.servers import (
    CURRENT,
    Checkout,
    ServerDidNotStart,
    ServicePair,
    WorkersUnsupported,
    restart_stack_services,
    service_pair,
    short_head,
    stack_pair,
    worktree,
)

# The code when issue 11 was filed ("Review: plugins inline ..."): the baseline.
OLD_COMMIT = "92960ab"
# How its stack served it. Its venv had neither uvloop nor httptools, so uvicorn's "auto" meant
# asyncio and h11; ours has both, and "auto" would hand the old code the new server's C parsers.
OLD_SERVER_OPTIONS = (
    "--no-access-log",
    "--timeout-graceful-shutdown",
    "10",
    "--loop",
    "asyncio",
    "--http",
    "h11",
)
OVERLOAD_FACTOR = 2.0
# The overload run's VU cap. At 2x capacity answers take longer (answered p99 ~240 ms, more
# in the spikes), so the scenario's 600 VUs ran out: 2,217 of 2,300 req/s sent, 1,375
# iterations dropped (2026-11-30). The load, not k6's cap, should be what overloads the services.
OVERLOAD_WORKERS = 2_000
# Since issue 13 every session of the scenario signs in first; the old code cannot.
OLD_CANNOT_SIGN_IN = (
    "not measured: it has no POST /auth/token, which every session of the scenario calls first"
    " since issue 13; it held 100 req/s in the last run without sign-ins"
)


def signs_in(crud_url: str) -> bool:
    """Whether this CRUD API has the sign-in the load scenario starts every session with."""
    return httpx.post(f"{crud_url}/auth/token", data={}, timeout=10).status_code != 404


@dataclass(frozen=True)
class Plan:
    probe_s: int
    warm_up_s: int
    # Between probes. The audit has already waited for every span to land; this lets what
    # outlives a run settle too (k6's connections closing, PostgreSQL's autovacuum after the
    # carts and orders a probe writes) before the next probe is timed.
    settle_s: float
    resolution: float
    max_probes: int
    confirm_failures: bool
    cpu_rounds: int
    cpu_duration: str
    start: float
    ceiling: float | None


def plan_for(quick: bool) -> Plan:
    ceiling = os.environ.get("CLICKPULSE_BENCH_MAX_RPS")
    start = float(os.environ.get("CLICKPULSE_BENCH_START_RPS", "200"))
    if quick:
        return Plan(10, 5, 3.0, 0.25, 3, False, 1, "3s", start, float(ceiling) if ceiling else None)
    return Plan(30, 15, 10.0, 0.05, 14, True, 4, "5s", start, float(ceiling) if ceiling else None)


@dataclass
class Target:
    """One version of the services under the mixed scenario."""

    code: str
    workers: int
    pair: ServicePair
    search: RateSearch
    probes: list[dict[str, Any]] = field(default_factory=list)
    overload: dict[str, Any] | None = None
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.code}, {self.workers} worker{'s' if self.workers > 1 else ''}"


def load_config_for(pair: ServicePair, folder: Path, workers: int | None = None) -> Path:
    """load/config.yaml with the base URLs of `pair` (and another VU cap, if given)."""
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["endpoints"]["crud_service"]["base_url"] = pair.crud_url
    raw["endpoints"]["ecommerce_service"]["base_url"] = pair.shop_url
    if workers is not None:
        raw["simulation"]["workers"] = workers
    path = folder / f"config-{pair.crud_url.rsplit(':', 1)[-1]}-{workers or 'default'}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_load(
    pair: ServicePair, rps: float, seconds: int, folder: Path, workers: int | None = None
) -> dict[str, Any]:
    """One `python -m clickpulse_load` run; its --json facts (empty if it wrote none, with
    the end of its output under "error")."""
    report = folder / f"run-{time.monotonic_ns()}.json"
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "clickpulse_load",
                "--config",
                str(load_config_for(pair, folder, workers)),
                "--rps",
                f"{rps:g}",
                "--duration",
                f"{seconds}s",
                "--json",
                str(report),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=seconds + 600,
        )
        output = (result.stdout + result.stderr)[-1500:]
    except subprocess.TimeoutExpired:
        output = "the load run did not end in time"
    facts: dict[str, Any] = json.loads(report.read_text()) if report.exists() else {}
    if not facts:
        facts["error"] = output
    facts.setdefault("target_rps", rps)
    return facts


def _num(facts: dict[str, Any], key: str) -> float | None:
    value = facts.get(key)
    return float(value) if isinstance(value, int | float) else None


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if digits else f"{round(value)}"


def describe(facts: dict[str, Any]) -> str:
    audit = facts.get("audit") or {}
    error_rate = _num(facts, "error_rate")
    return (
        f"achieved {_fmt(_num(facts, 'achieved_rps'), 1)}, errors"
        f" {_fmt(error_rate * 100 if error_rate is not None else None, 2)} %,"
        f" p95 {_fmt(_num(facts, 'p95_ms'))}"
        f" ms, p99 {_fmt(_num(facts, 'p99_ms'))} ms, missing {audit.get('missing', '-')}"
        + "".join(f"; {reason}" for reason in facts.get("missed_reasons") or [])
    )


def warm_up(targets: list[Target], plan: Plan, folder: Path) -> None:
    """A run at the first rate that does not count. Freshly started services compile their
    queries and open their pools on the first requests: in a smoke run the first probe after
    a restart (2 workers, 20 req/s) had p95 116 ms, the next ones 35 ms, and the search ended
    at 15 req/s where one worker had held 40."""
    for target in targets:
        rate = target.search.next_rate()
        if rate is not None:
            facts = run_load(target.pair, rate, plan.warm_up_s, folder)
            console.print(
                f"  {target.name} @ {rate:g} req/s (warm-up): {describe(facts)}",
                markup=False,
                highlight=False,
            )
    time.sleep(plan.settle_s)


def search(targets: list[Target], plan: Plan, folder: Path) -> None:
    """All targets' searches in turn, one probe each per turn, so that the box's drift over
    minutes hits every version alike instead of whichever was searched last."""
    while True:
        pending = [(t, rate) for t in targets if (rate := t.search.next_rate()) is not None]
        if not pending:
            return
        for target, rate in pending:
            facts = run_load(target.pair, rate, plan.probe_s, folder)
            reasons = shortfalls(facts)
            target.search.record(rate, not reasons)
            target.probes.append({"probe_rps": rate, **facts})
            verdict = "holds" if not reasons else "fails: " + "; ".join(reasons)
            if "error" in facts:
                verdict += f"\n{facts['error']}"
            console.print(
                f"  {target.name} @ {rate:g} req/s: {describe(facts)}: {verdict}",
                markup=False,
                highlight=False,
            )
            time.sleep(plan.settle_s)


def served_shed_p99_ms(settings: Settings, run_id: str) -> float | None:
    """The p99 of the shed answers' own spans in a run: how long the services took to shed,
    without the time a request spent in the client and in its socket before the span began."""
    rows = (
        admin_client(settings)
        .query(
            "SELECT quantileIf(0.99)(response_time_ms, status_code IN (429, 503))"
            " FROM analytics.request_metrics WHERE run_id = {r:String}",
            parameters={"r": run_id},
        )
        .result_rows
    )
    value = rows[0][0] if rows else None
    # quantileIf over no shed answer is nan.
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else None


def overload(settings: Settings, target: Target, plan: Plan, folder: Path) -> None:
    capacity = target.search.capacity
    if capacity is None:
        return
    rate = OVERLOAD_FACTOR * capacity
    if plan.ceiling is not None:
        rate = min(rate, plan.ceiling)
    target.overload = run_load(target.pair, rate, plan.probe_s, folder, OVERLOAD_WORKERS)
    if run_id := target.overload.get("run_id"):
        target.overload["shed_p99_span_ms"] = served_shed_p99_ms(settings, run_id)
    console.print(
        f"  {target.name} @ {rate:g} req/s (overload): {describe(target.overload)}",
        markup=False,
        highlight=False,
    )
    time.sleep(plan.settle_s)


def capacity_row(target: Target) -> dict[str, Any]:
    capacity = target.search.capacity
    # The probe that set the capacity.
    held = [f for f in target.probes if f["probe_rps"] == capacity and not shortfalls(f)]
    row: dict[str, Any] = {
        "code": target.code,
        "workers": target.workers,
        "capacity req/s": (
            ("≥ " if target.search.capped else "") + _fmt(capacity)
            if capacity is not None
            else ("-" if target.note else f"< {target.search.floor:g}")
        )
        + (f" ({target.note})" if target.note else ""),
        "p95 ms at capacity": _fmt(_num(held[-1], "p95_ms")) if held else "-",
    }
    facts = target.overload or {}
    goodput = _num(facts, "goodput_rps")
    row.update(
        {
            "overload req/s": _fmt(_num(facts, "target_rps")),
            "sent req/s": _fmt(_num(facts, "achieved_rps")),
            "goodput req/s": _fmt(goodput),
            "goodput/capacity": (
                _fmt(goodput / capacity, 2) if goodput is not None and capacity else "-"
            ),
            "shed share": _fmt(_num(facts, "shed_rate"), 3),
            "answered p99 ms": _fmt(_num(facts, "answered_p99_ms")),
            "shed p99 ms": _fmt(_num(facts, "shed_p99_ms")),
            "shed p99 ms, spans": _fmt(_num(facts, "shed_p99_span_ms")),
        }
    )
    return row


def cpu_per_request(
    settings: Settings, old: Checkout, new_label: str, plan: Plan
) -> list[dict[str, Any]]:
    """Service CPU per request of the old and the new CRUD API, telemetry off and on, measured
    the way section 2 does (extra processes, closed-model k6, the process's own CPU)."""
    variants = {
        f"{code}, telemetry {mode}": (checkout, mode)
        for code, checkout in ((old.label, old), (new_label, CURRENT))
        for mode in ("off", "on")
    }
    rows = []
    with crud_processes(settings, variants) as (urls, processes):
        for endpoint, target in OVERHEAD_TARGETS.items():
            results = probe_rounds(
                urls, processes, list(variants), target, plan.cpu_duration, plan.cpu_rounds
            )
            row: dict[str, Any] = {"endpoint": endpoint}
            for name, probes in results.items():
                row[name] = round(statistics.median(p["cpu_ms"] for p in probes), 2)
            rows.append(row)
            console.print(f"  CPU ms/request {row}")
    return rows


def bench_capacity(
    settings: Settings, plan: Plan, save: Callable[[list[Target]], None]
) -> tuple[list[Target], list[dict[str, Any]]]:
    new_label = f"{short_head()} (new)"

    def new_search() -> RateSearch:
        return RateSearch(
            start=plan.start,
            resolution=plan.resolution,
            ceiling=plan.ceiling,
            max_probes=plan.max_probes,
            confirm_failures=plan.confirm_failures,
        )

    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="clickpulse-capacity-") as tmp:
        folder = Path(tmp)
        try:
            with worktree(OLD_COMMIT, f"{OLD_COMMIT} (old)", OLD_SERVER_OPTIONS) as old:
                console.print(f"  {OLD_COMMIT} checked out in {old.root}")
                cpu = cpu_per_request(settings, old, new_label, plan)
                # Fresh processes for both versions, one worker each, before they are compared.
                restart_stack_services(settings, 1)
                with contextlib.ExitStack() as running:
                    new_target = Target(new_label, 1, stack_pair(settings), new_search())
                    # The new pair stands in until the old one starts: a target that is not
                    # measured is never probed.
                    old_target = Target(old.label, 1, new_target.pair, new_search())
                    try:
                        old_target.pair = running.enter_context(
                            service_pair(settings, old, free_port(), free_port())
                        )
                        if not signs_in(old_target.pair.crud_url):
                            old_target.note = OLD_CANNOT_SIGN_IN
                    except ServerDidNotStart as exc:
                        # A fresh venv holds this code's dependencies, not the old code's (its
                        # shop imported opentelemetry-instrumentation-httpx, since dropped).
                        console.print(f"  [yellow]{exc}[/yellow]")
                        old_target.note = f"not measured: its services do not start ({exc.why})"
                    if old_target.note:
                        old_target.search.max_probes = 0
                    targets += [old_target, new_target]
                    warm_up([old_target, new_target], plan, folder)
                    search([old_target, new_target], plan, folder)
                    overload(settings, old_target, plan, folder)
                    overload(settings, new_target, plan, folder)
                    save(targets)
            two = Target(new_label, 2, stack_pair(settings), new_search())
            targets.append(two)
            try:
                restart_stack_services(settings, 2)
            except WorkersUnsupported as exc:
                two.note = f"not measured: {exc}"
                two.search.max_probes = 0
            warm_up([two], plan, folder)
            search([two], plan, folder)
            overload(settings, two, plan, folder)
            save(targets)
        finally:
            try:
                restart_stack_services(settings, None)  # as the environment says, as before
            except RuntimeError as exc:
                console.print(f"[red]could not restart the stack's services:[/red] {exc}")
    return targets, cpu


def section(settings: Settings, quick: bool, note: str) -> str:
    plan = plan_for(quick)
    record = settings.logs_dir / "bench-capacity.json"

    def save(targets: list[Target]) -> None:
        # Every probe's facts, for a closer look than the doc's table.
        record.write_text(
            json.dumps(
                [{"target": t.name, "probes": t.probes, "overload": t.overload} for t in targets],
                indent=1,
            )
        )

    targets, cpu = bench_capacity(settings, plan, save)
    console.print(f"  every probe's facts: {record}")
    return render(plan, targets, cpu, note)


def render(plan: Plan, targets: list[Target], cpu: list[dict[str, Any]], note: str) -> str:
    rows = [capacity_row(t) for t in targets]
    console.print(rows)
    c = CRITERIA
    paths = "\n".join(f"- {t.name}: {t.search.path() or 'no probe'}" for t in targets)
    failures = (
        "a failed probe repeated once (a rate fails only when both fail), "
        if plan.confirm_failures
        else ""
    )
    method = (
        "The highest rate the mixed scenario of `nox -s load` (`load/config.yaml`) holds against"
        f" the whole local stack: achieved >= {c.min_achieved_share:.0%} of the target, error"
        f" rate < {c.max_error_rate:.1%}, p95 < {c.max_p95_ms:g} ms, nothing missing in"
        f" ClickHouse. Searched from {plan.start:g} req/s, doubling until a probe fails, then"
        f" bisecting to {plan.resolution:.0%}; each probe {plan.probe_s} s at the rate after the"
        f" ramp-up, {failures}{plan.settle_s:g} s pause between probes, after a"
        f" {plan.warm_up_s} s warm-up run that does not count. `{OLD_COMMIT}` (old) is the code"
        " when issue 11 was filed, run from a git worktree on its own ports (served as its stack"
        " served it: asyncio, h11) against the same PostgreSQL, collector and ClickHouse; its"
        " search and this code's (new) took turns, probe by probe (since issue 13 every session"
        " signs in first, which the old code cannot). Overload: one run at"
        f" {OVERLOAD_FACTOR:g}x the capacity, with up to {OVERLOAD_WORKERS:,} VUs (the"
        " scenario's cap ran out there: answers past capacity take longer); goodput is the"
        " rate of answers that are neither 5xx nor 429, shed answers are 503/429; their p99 at"
        " the client (k6), and in their"
        " spans (the service's own time, without the time in k6 and in the socket before the"
        " server read the request). k6 runs on the same 2 cores as the services,"
        " the collector and ClickHouse."
    )
    cpu_method = (
        "Service CPU ms per request: the CRUD API alone on extra processes, as in section 2"
        f" ({plan.cpu_rounds} x {plan.cpu_duration} per variant, in turn, 20 VUs, closed model;"
        " medians)."
    )
    return (
        "## 6. Capacity\n\n"
        + textwrap.fill(method, 100)
        + "\n\n"
        + md_table(rows)
        + "\n\nProbes (req/s):\n\n"
        + paths
        + ("\n\n" + textwrap.fill(cpu_method, 100) + "\n\n" + md_table(cpu) if cpu else "")
        + note
    )
