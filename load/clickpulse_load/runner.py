"""`nox -s load`: renders load/config.yaml for k6, runs the k6 binary, reports what k6 saw, then
audits what landed in ClickHouse for this run.

Exit codes (when several apply, the first in this list wins):
  130  interrupted by Ctrl-C (k6 stops cleanly and the run is still reported)
  1    requests were lost: answered by the services but never landed in ClickHouse
  4    the target rate was missed: the steady phase achieved less than 98 % of it; the report
       says why (VU cap reached, server saturation, errors, dropped iterations)
  3    a k6 threshold was breached, or k6 failed
  2    bad configuration, or the stack is not up (nothing ran)
  0    all good
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

from clickpulse_load.audit import Audit, audit_run
from clickpulse_load.config import DEFAULT_CONFIG, ConfigError, LoadConfig, load_config
from clickpulse_load.k6 import k6_binary, k6_environment
from clickpulse_load.plan import build_plan, seed

SCENARIO = Path(__file__).resolve().parent.parent / "scenario.js"
console = Console()

# Below this share of the target rate in the steady phase, the run missed its target.
MIN_ACHIEVED = 0.98
# Median latency of the second half of the steady phase over the first half's, and by at least
# this many ms, that we call climbing (a queue building up in the services).
CLIMB_RATIO = 1.5
CLIMB_MIN_MS = 20.0
MESSAGES_SHOWN = 10

EXIT_OK = 0
EXIT_LOST = 1
EXIT_CONFIG = 2
EXIT_THRESHOLD = 3
EXIT_TARGET_MISSED = 4
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class K6Message:
    """One kind of message k6 logged, and how often."""

    level: str
    text: str
    count: int


@dataclass
class K6Result:
    exit_code: int
    summary: dict[str, Any]
    interrupted: bool
    elapsed_s: float
    messages: list[K6Message] = field(default_factory=list)


_LOGFMT = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
# `Get "http://host/path?query": request timeout`: the cause without the URL, so that one
# failure mode is one line however many URLs it hit.
_FAILED_REQUEST = re.compile(r'^[A-Z][a-z]+ "[^"]*": ')
# `read tcp 127.0.0.1:52792->127.0.0.1:8102: ...`: the client's port differs every time.
_CLIENT_PORT = re.compile(r":\d+->")


def _unquote(value: str) -> str:
    if value.startswith('"'):
        try:
            text: str = json.loads(value)
            return text
        except ValueError:
            return value.strip('"')
    return value


def k6_messages(log: Path) -> list[K6Message]:
    """k6's log (`--log-output=file=...`) grouped by level, message and cause, most frequent
    first: a run that times out thousands of requests logs one warning each."""
    counts: dict[tuple[str, str], int] = {}
    if not log.exists():
        return []
    for line in log.read_text(errors="replace").splitlines():
        fields = {key: _unquote(value) for key, value in _LOGFMT.findall(line)}
        if "msg" not in fields:
            continue
        text = fields["msg"]
        if fields.get("error"):
            text += ": " + _CLIENT_PORT.sub(":*->", _FAILED_REQUEST.sub("", fields["error"]))
        key = (fields.get("level", "info"), text)
        counts[key] = counts.get(key, 0) + 1
    return [
        K6Message(level, text, count)
        for (level, text), count in sorted(counts.items(), key=lambda item: -item[1])
    ]


def _with_overrides(path: Path, rps: float | None, duration: str | None) -> Path:
    """Writes the config with CLI overrides applied, so they are validated like the file."""
    if rps is None and duration is None:
        return path
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    simulation = raw.setdefault("simulation", {})
    if rps is not None:
        simulation["requests_per_second"] = rps
    if duration is not None:
        simulation["duration"] = duration
    merged = Path(tempfile.mkdtemp(prefix="clickpulse-load-")) / path.name
    merged.write_text(yaml.safe_dump(raw))
    return merged


def _check_services(config: LoadConfig) -> None:
    for name, service in config.endpoints.items():
        url = service.url + "/health"
        try:
            ok = httpx.get(url, timeout=5).status_code == 200
        except httpx.HTTPError:
            ok = False
        if not ok:
            raise ConfigError(f"{name} does not answer at {url}: start the stack with `nox -s up`")


def run_k6(plan: dict[str, Any], workdir: Path, *, quiet: bool = False) -> K6Result:
    """Runs k6 on the plan; `quiet` sends its output to workdir/k6.log (background runs)."""
    plan_file = workdir / "plan.json"
    summary_file = workdir / "summary.json"
    log_file = workdir / "k6-messages.log"
    plan_file.write_text(json.dumps(plan))
    argv = [
        k6_binary(),
        "run",
        "--no-usage-report",
        # k6's REST API (port 6565) is unused here and clashes with any other k6 running.
        "--address",
        "",
        # One line per failed request would bury the report: the runner prints a digest.
        f"--log-output=file={log_file}",
        "-e",
        f"CLICKPULSE_LOAD_PLAN={plan_file}",
        "-e",
        f"CLICKPULSE_SUMMARY={summary_file}",
        str(SCENARIO),
    ]
    started = time.monotonic()
    interrupted = False
    if quiet:
        argv.insert(2, "--quiet")
        with (workdir / "k6.log").open("wb") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=k6_environment()
            )
    else:
        # k6 redraws its progress bar every second: in a log file or a pipe that is a flood.
        if not sys.stdout.isatty():
            argv.insert(2, "--quiet")
        proc = subprocess.Popen(argv, env=k6_environment())
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        # k6 got the same Ctrl-C: it stops its scenario and still writes the summary.
        interrupted = True
        console.print(
            "\n[yellow]interrupted: waiting for k6 to stop and write its summary[/yellow]"
        )
        try:
            code = proc.wait(timeout=30)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            proc.kill()
            code = proc.wait()
    elapsed = time.monotonic() - started
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    return K6Result(code, summary, interrupted, elapsed, k6_messages(log_file))


def _metric(summary: dict[str, Any], name: str) -> dict[str, Any]:
    values: dict[str, Any] = summary.get("metrics", {}).get(name, {}).get("values", {})
    return values


def _count(summary: dict[str, Any], name: str) -> int:
    return int(_metric(summary, name).get("count", 0))


def _stat(summary: dict[str, Any], name: str, stat: str) -> float | None:
    """A trend's statistic, or None when the trend has no samples."""
    values = _metric(summary, name)
    if not values.get("count"):
        return None
    return float(values[stat])


@dataclass(frozen=True)
class EndpointLatency:
    name: str
    requests: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True)
class ThresholdOutcome:
    metric: str
    rule: str
    ok: bool


@dataclass(frozen=True)
class LoadSummary:
    """What a run achieved, what went wrong and why; `facts()` is the --json document."""

    run_id: str
    target_rps: float
    steady_s: float
    achieved_rps: float  # answered requests per second, steady phase
    goodput_rps: float  # steady-phase answers with status < 500 and != 429, per second
    requests: int  # every request k6 made, answered or not
    sent: int  # answered requests (what the audit expects to land)
    abandoned: int  # requests k6 gave up on (timeout or connection error)
    abandoned_timeouts: int
    server_errors: int  # steady-phase 5xx answers other than 503
    request_timeout_ms: int
    error_rate: float  # k6 http_req_failed
    p95_ms: float | None  # answered requests, steady phase (whole run when it had none)
    p99_ms: float | None
    shed: int  # steady-phase 503/429 answers
    shed_rate: float  # their share of steady-phase answers
    shed_p99_ms: float | None
    rate_limited: int  # of the shed, the 429s (a rate limit, not capacity)
    answered_p99_ms: float | None  # steady-phase answers that were not 503/429
    early_p50_ms: float | None  # median latency, first and second half of the steady phase
    late_p50_ms: float | None
    vus_max: int  # VUs k6 had (pre-allocated plus any it started)
    vus_peak: int  # most VUs busy at one of k6's once-a-second samples
    workers: int  # the cap: simulation.workers
    iteration_ms: float | None  # mean VU time per iteration (one request)
    dropped_iterations: int
    target_missed: bool
    missed_reasons: tuple[str, ...]
    endpoints: tuple[EndpointLatency, ...]
    thresholds: tuple[ThresholdOutcome, ...]
    audit: Audit | None
    interrupted: bool
    k6_exit_code: int
    k6_messages: tuple[K6Message, ...]
    problems: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.audit is not None and self.audit.missing > 0:
            return EXIT_LOST
        if self.target_missed:
            return EXIT_TARGET_MISSED
        # 99 is k6's code for a breached threshold; any other is k6 failing.
        if self.problems or self.k6_exit_code != 0:
            return EXIT_THRESHOLD
        return EXIT_OK

    def facts(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "run_id": self.run_id,
            "target_rps": self.target_rps,
            "achieved_rps": self.achieved_rps,
            "goodput_rps": self.goodput_rps,
            "requests": self.requests,
            "sent": self.sent,
            "abandoned": self.abandoned,
            "error_rate": self.error_rate,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "shed": self.shed,
            "shed_rate": self.shed_rate,
            "shed_p99_ms": self.shed_p99_ms,
            "rate_limited": self.rate_limited,
            "answered_p99_ms": self.answered_p99_ms,
            "vus_max": self.vus_max,
            "vus_peak": self.vus_peak,
            "workers": self.workers,
            "dropped_iterations": self.dropped_iterations,
            "target_missed": self.target_missed,
            "missed_reasons": list(self.missed_reasons),
            "interrupted": self.interrupted,
            "k6_exit_code": self.k6_exit_code,
            "exit_code": self.exit_code,
            "problems": list(self.problems),
        }
        if self.audit is not None:
            audit = self.audit
            facts["audit"] = {
                "sent": audit.sent,
                "landed": audit.landed,
                "landed_distinct": audit.landed_distinct,
                "missing": audit.missing,
                "duplicates": audit.duplicates,
                "abandoned": audit.abandoned_landed,
                "abandoned_by_client": audit.abandoned,
                "unexplained": audit.extra,
                "lag_p50_s": audit.lag_p50_s,
                "lag_p99_s": audit.lag_p99_s,
                "lag_max_s": audit.lag_max_s,
            }
        return facts


def _missed_reasons(s: dict[str, Any], run: LoadSummary) -> list[str]:
    """Why the steady phase fell short of the target, from what k6 saw."""
    reasons = []
    if run.dropped_iterations > 0 and run.vus_max >= run.workers:
        reason = (
            f"VU cap reached: all {run.workers} workers (simulation.workers) were in use and k6"
            f" dropped {run.dropped_iterations} iterations"
        )
        if run.iteration_ms:
            needed = math.ceil(run.target_rps * run.iteration_ms / 1000)
            reason += (
                f"; requests took {run.iteration_ms:.0f} ms on average, so {run.target_rps:g}"
                f" req/s keeps about {needed} VUs busy on average, more at peaks"
            )
        reasons.append(reason)
    elif run.dropped_iterations > 0:
        reasons.append(
            f"dropped iterations: k6 dropped {run.dropped_iterations} iterations while starting"
            f" VUs ({run.vus_max} of {run.workers} started)"
        )
    if run.shed > 0:
        reasons.append(
            f"server saturation: the services shed {run.shed} requests with 503/429"
            f" ({run.shed_rate:.1%} of answers)"
        )
    early, late = run.early_p50_ms, run.late_p50_ms
    if (
        early is not None
        and late is not None
        and late > early * CLIMB_RATIO
        and late - early > CLIMB_MIN_MS
    ):
        reasons.append(
            f"server saturation: median latency climbed from {early:.0f} ms in the first"
            f" half of the steady phase to {late:.0f} ms in the second"
        )
    abandoned = _count(s, "clickpulse_abandoned{phase:steady}")
    if abandoned > 0:
        timeouts = _count(s, "clickpulse_abandoned{phase:steady,cause:timeout}")
        reasons.append(
            f"errors: {abandoned} requests got no answer in the steady phase ({timeouts} timed"
            f" out after {run.request_timeout_ms} ms, {abandoned - timeouts} connection"
            " errors)"
        )
    if run.server_errors > 0:
        reasons.append(f"errors: {run.server_errors} answers were server errors (5xx)")
    if not reasons:
        reasons.append(
            "the load generator fell behind without dropping iterations (k6 short of CPU?)"
        )
    return reasons


def summarize(plan: dict[str, Any], result: K6Result, audit: Audit | None) -> LoadSummary:
    """The figures of a run and the problems found; prints nothing (see print_summary)."""
    s = result.summary
    run_ms = s.get("state", {}).get("testRunDurationMs", result.elapsed_s * 1000)
    steady_s = max(0.001, min(plan["duration_s"], run_ms / 1000 - plan["ramp_up_s"]))
    steady_answers = _count(s, "clickpulse_sent{phase:steady}")
    achieved = steady_answers / steady_s
    shed = _count(s, "clickpulse_latency{phase:steady,answer:shed}")
    rate_limited = _count(s, "clickpulse_rate_limited{phase:steady}")
    steady_latency = "clickpulse_latency{phase:steady}"
    if not _count(s, steady_latency):
        steady_latency = "clickpulse_latency"
    target_missed = achieved < plan["rps"] * MIN_ACHIEVED

    problems: list[str] = []
    thresholds = []
    for metric, rules in plan["thresholds"].items():
        outcome = s.get("metrics", {}).get(metric, {}).get("thresholds", {})
        for rule in rules:
            ok = bool(outcome.get(rule, {}).get("ok", False))
            thresholds.append(ThresholdOutcome(metric, rule, ok))
            if not ok:
                problems.append(f"threshold {metric} {rule} breached")
    if rate_limited:
        problems.append(
            f"rate limits: {rate_limited} requests got 429: the scenario goes past the services'"
            " per-user or per-address limits (CLICKPULSE_RATE_LIMIT_USER / _ANONYMOUS), so it"
            " measures the limits, not the system"
        )
    if audit is not None and audit.missing > 0:
        problems.append(f"{audit.missing} answered requests never landed in ClickHouse")
    if target_missed:
        problems.append(
            f"target missed: {achieved:.1f} of {plan['rps']:g} req/s in the steady phase"
            f" ({achieved / plan['rps']:.1%}, needs {MIN_ACHIEVED:.0%})"
        )
    if result.exit_code not in (0, 99) and not result.interrupted:
        problems.append(f"k6 exited with {result.exit_code}")

    endpoints = []
    for i, endpoint in enumerate(plan["endpoints"]):
        values = _metric(s, f"clickpulse_endpoint_{i}")
        if values.get("count"):
            endpoints.append(
                EndpointLatency(
                    f"{endpoint['method']} {endpoint['path']}",
                    int(values["count"]),
                    *(float(values.get(k, 0)) for k in ("med", "p(95)", "p(99)", "max")),
                )
            )
    iteration = _metric(s, "iteration_duration")
    summary = LoadSummary(
        run_id=plan["run_id"],
        target_rps=plan["rps"],
        steady_s=steady_s,
        achieved_rps=achieved,
        goodput_rps=_count(s, "clickpulse_sent{phase:steady,outcome:good}") / steady_s,
        requests=_count(s, "http_reqs"),
        sent=_count(s, "clickpulse_sent"),
        abandoned=_count(s, "clickpulse_abandoned"),
        abandoned_timeouts=_count(s, "clickpulse_abandoned{cause:timeout}"),
        server_errors=_count(s, "clickpulse_sent{phase:steady,outcome:error}"),
        request_timeout_ms=plan["request_timeout_ms"],
        error_rate=float(_metric(s, "http_req_failed").get("rate", 0.0)),
        p95_ms=_stat(s, steady_latency, "p(95)"),
        p99_ms=_stat(s, steady_latency, "p(99)"),
        shed=shed,
        shed_rate=shed / steady_answers if steady_answers else 0.0,
        shed_p99_ms=_stat(s, "clickpulse_latency{phase:steady,answer:shed}", "p(99)"),
        rate_limited=rate_limited,
        answered_p99_ms=_stat(s, "clickpulse_latency{phase:steady,answer:served}", "p(99)"),
        early_p50_ms=_stat(s, "clickpulse_latency{window:early}", "med"),
        late_p50_ms=_stat(s, "clickpulse_latency{window:late}", "med"),
        vus_max=int(_metric(s, "vus_max").get("max", 0)),
        vus_peak=int(_metric(s, "vus").get("max", 0)),
        workers=plan["max_vus"],
        iteration_ms=float(iteration["avg"]) if iteration.get("count") else None,
        dropped_iterations=_count(s, "dropped_iterations"),
        target_missed=target_missed,
        missed_reasons=(),
        endpoints=tuple(endpoints),
        thresholds=tuple(thresholds),
        audit=audit,
        interrupted=result.interrupted,
        k6_exit_code=result.exit_code,
        k6_messages=tuple(result.messages),
        problems=tuple(problems),
    )
    if not target_missed:
        return summary
    return replace(summary, missed_reasons=tuple(_missed_reasons(s, summary)))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_k6_messages(messages: Sequence[K6Message], out: Console = console) -> None:
    shown = [m for m in messages if m.level != "info"]
    for message in shown[:MESSAGES_SHOWN]:
        style = "red" if message.level in ("error", "fatal") else "yellow"
        out.print(
            f"[{style}]k6 {message.level}[/{style}] x{message.count}: {message.text}",
            highlight=False,
        )
    if len(shown) > MESSAGES_SHOWN:
        out.print(f"... and {len(shown) - MESSAGES_SHOWN} other kinds of k6 messages")


def print_summary(summary: LoadSummary, out: Console = console) -> None:
    print_k6_messages(summary.k6_messages, out)
    overview = Table(title=f"load run {summary.run_id}", show_header=False)
    overview.add_row("target rate", f"{summary.target_rps:g} req/s")
    overview.add_row(
        "achieved rate (steady phase)",
        f"{summary.achieved_rps:.1f} req/s ({summary.achieved_rps / summary.target_rps:.1%}"
        " of target)",
    )
    overview.add_row("goodput (steady phase, not 5xx/429)", f"{summary.goodput_rps:.1f} req/s")
    overview.add_row("requests made", str(summary.requests))
    overview.add_row(
        "no answer (k6 gave up)",
        f"{summary.abandoned} ({summary.abandoned_timeouts} timed out after"
        f" {summary.request_timeout_ms} ms)",
    )
    overview.add_row("error rate", f"{summary.error_rate:.2%}")
    overview.add_row(
        "shed (503/429, steady phase)",
        f"{summary.shed} ({summary.shed_rate:.2%}), p99 {_ms(summary.shed_p99_ms)} ms;"
        f" {summary.rate_limited} of them rate-limited (429)",
    )
    overview.add_row(
        "latency (answered, steady phase)",
        f"p95 {_ms(summary.p95_ms)} ms, p99 {_ms(summary.p99_ms)} ms",
    )
    busy = summary.achieved_rps * (summary.iteration_ms or 0) / 1000
    overview.add_row(
        "VUs",
        f"{busy:.1f} busy on average (rate x time per request), {summary.vus_peak} at the"
        f" busiest second; {summary.vus_max} started of {summary.workers} workers",
    )
    overview.add_row("dropped iterations", str(summary.dropped_iterations))
    out.print(overview)

    latency = Table(title="latency per endpoint (ms)")
    for column in ("endpoint", "requests", "p50", "p95", "p99", "max"):
        latency.add_column(column, justify="left" if column == "endpoint" else "right")
    for e in summary.endpoints:
        latency.add_row(
            e.name, str(e.requests), *(f"{v:.1f}" for v in (e.p50_ms, e.p95_ms, e.p99_ms, e.max_ms))
        )
    out.print(latency)

    thresholds = Table(title="k6 thresholds")
    for column in ("metric", "rule", "result"):
        thresholds.add_column(column)
    for t in summary.thresholds:
        thresholds.add_row(t.metric, t.rule, "[green]ok[/green]" if t.ok else "[red]breached[/red]")
    out.print(thresholds)

    audit = summary.audit
    if audit is not None:
        table = Table(title="ingestion audit (analytics.request_metrics)", show_header=False)
        table.add_row("sent (answered requests)", str(audit.sent))
        table.add_row("landed (distinct spans)", str(audit.landed_distinct))
        table.add_row("missing", str(audit.missing))
        table.add_row("duplicates (same span twice)", str(audit.duplicates))
        if audit.abandoned:
            table.add_row(
                "abandoned by the client, answered by the server",
                f"{audit.abandoned_landed} of {audit.abandoned} abandoned",
            )
        if audit.extra:
            table.add_row("landed, neither sent nor abandoned", str(audit.extra))
        if audit.lag_p99_s is not None:
            table.add_row(
                "visibility lag (request end -> queryable)",
                f"p50 {audit.lag_p50_s:.2f}s, p99 {audit.lag_p99_s:.2f}s,"
                f" max {audit.lag_max_s:.2f}s",
            )
        out.print(table)

    for problem in summary.problems:
        out.print(f"[red]problem:[/red] {problem}", highlight=False)
    for reason in summary.missed_reasons:
        out.print(f"  [yellow]why:[/yellow] {reason}", highlight=False)
    if summary.exit_code == EXIT_OK:
        out.print("[green]all good[/green]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="nox -s load --",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--rps", type=float, help="override simulation.requests_per_second")
    parser.add_argument("--duration", help="override simulation.duration (e.g. 30s, 5m, 0)")
    parser.add_argument("--no-audit", action="store_true", help="skip the ClickHouse audit")
    parser.add_argument("--audit-timeout", type=float, default=60.0)
    parser.add_argument("--json", type=Path, help="also write the report's figures here")
    args = parser.parse_args(argv)
    try:
        config = load_config(_with_overrides(args.config, args.rps, args.duration))
        _check_services(config)
        users, products = seed(config)
        k6_binary()
    except ValueError as exc:  # ConfigError, or the administrator cannot sign in
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return EXIT_CONFIG
    run_id = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    plan = build_plan(config, run_id=run_id, users=users, product_ids=products)
    console.print(
        f"run [bold]{run_id}[/bold]: {plan['rps']:g} req/s for {config.simulation.duration}"
        f" (ramp-up {plan['ramp_up_s']}s), {len(users)} users, {len(products)} products,"
        f" {plan['pre_allocated_vus']} VUs pre-allocated of {plan['max_vus']}"
    )
    with tempfile.TemporaryDirectory(prefix="clickpulse-k6-") as tmp:
        result = run_k6(plan, Path(tmp))
    if not result.summary:
        print_k6_messages(result.messages)
        console.print(f"[red]error:[/red] k6 exited with {result.exit_code} and wrote no summary")
        return EXIT_INTERRUPTED if result.interrupted else EXIT_THRESHOLD
    audit = None
    if not args.no_audit:
        sent = _count(result.summary, "clickpulse_sent")
        abandoned = _count(result.summary, "clickpulse_abandoned")
        with console.status("waiting for the pipeline to land this run in ClickHouse"):
            audit = audit_run(run_id, sent, abandoned=abandoned, timeout_s=args.audit_timeout)
    summary = summarize(plan, result, audit)
    if args.json is not None:
        args.json.write_text(json.dumps(summary.facts(), indent=2))
    print_summary(summary)
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
