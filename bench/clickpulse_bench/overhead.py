"""Section 2: instrumentation overhead, the same CRUD endpoints on two extra processes with
telemetry on and off (k6, closed model), where the box's CPU goes meanwhile, and the in-process
span cost (span_cost.py)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from clickpulse_load.config import load_config
from clickpulse_load.plan import seed

from clickpulse.stack.components import all_components
from clickpulse.stack.settings import Settings
from clickpulse_bench.common import BENCH_DIR, console, free_port, k6_binary, k6_environment
from clickpulse_bench.report import md_table
from clickpulse_bench.servers import CRUD_APP, CURRENT, Checkout, start_uvicorn, stop, wait_healthy
from clickpulse_bench.span_cost import bench_span_cost


def _tree_cpu(server: psutil.Process) -> dict[int, float]:
    """User + system CPU seconds of the process and each live descendant, by pid."""
    seconds = {}
    for proc in [server, *server.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            seconds[proc.pid] = sum(proc.cpu_times()[:2])
    return seconds


def _k6_cpu() -> float:
    """User + system CPU seconds of this process's finished children: k6 runs, nothing else."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stack_processes(settings: Settings) -> dict[str, psutil.Process]:
    """The running stack's processes by component (ClickHouse, PostgreSQL, the collector, the
    stack's own services, the monitor); their children count as theirs."""
    return {
        component.name: proc
        for component in all_components(settings)
        if (proc := component.process.running()) is not None
    }


def _cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def _probe(
    base_url: str,
    target: str,
    duration: str,
    vus: int,
    server: psutil.Process,
    product_ids: list[int],
    box: dict[str, psutil.Process] | None = None,
    rate: int = 0,
) -> dict[str, float]:
    """One k6 run against `base_url` (`vus` in a closed loop, or `rate` requests a second),
    then SETTLE_S for the pipeline to finish its spans (the collector's batches go every 2 s):
    the CPU counted, the service's and each of `box`'s process trees', is that of the run and
    of what it left to do."""
    box = box or {}
    box_before = {name: _tree_cpu(proc) for name, proc in box.items()}
    k6_before = _k6_cpu()
    cpu_before = _tree_cpu(server)
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        subprocess.run(
            [
                k6_binary(),
                "run",
                "--quiet",
                "--no-usage-report",
                "-e",
                f"BASE_URL={base_url}",
                "-e",
                f"TARGET={target}",
                "-e",
                f"DURATION={duration}",
                "-e",
                f"VUS={vus}",
                "-e",
                f"RATE={rate}",
                "-e",
                f"PRODUCT_IDS={','.join(map(str, product_ids))}",
                "-e",
                f"SUMMARY={summary}",
                str(BENCH_DIR / "overhead.js"),
            ],
            check=True,
            capture_output=True,
            env=k6_environment(),
        )
        metrics = json.loads(summary.read_text())["metrics"]
    refused = metrics["http_req_failed"]["values"]["rate"]
    if refused > 0:
        # A 429 or 503 costs a fraction of the request it refuses: the figures would be wrong.
        raise RuntimeError(
            f"{base_url}{target}: {refused:.1%} of the requests were not answered 2xx"
        )
    k6_s = _k6_cpu() - k6_before
    time.sleep(SETTLE_S)
    cpu_after = _tree_cpu(server)
    requests = metrics["http_reqs"]["values"]["count"]
    main_s = cpu_after.get(server.pid, 0.0) - cpu_before.get(server.pid, 0.0)
    cpu_s = _cpu_delta(cpu_before, cpu_after)
    box_us = {
        "the probed service process": main_s,
        "its span relay": cpu_s - main_s,
        "k6": k6_s,
        **{name: _cpu_delta(box_before[name], _tree_cpu(proc)) for name, proc in box.items()},
    }
    return {
        # The service's own CPU per request (user + system, its span export included, in an
        # export thread or, since the span relay, in a child process): the cost of telemetry
        # itself, whatever else the box is doing.
        "cpu_ms": cpu_s * 1000 / requests,
        "rps": metrics["http_reqs"]["values"]["rate"],
        "p99_ms": metrics["http_req_duration"]["values"]["p(99)"],
        **{f"box_us:{name}": seconds * 1e6 / requests for name, seconds in box_us.items()},
    }


# The cheapest endpoint (one row by primary key: the worst case for relative overhead) and a
# page of 20 products.
OVERHEAD_TARGETS = {
    "GET /products/{product_id}": "",
    "GET /products?limit=20": "/products?limit=20",
}


SETTLE_S = 2.5
# The fixed-rate probes: below what even a slow machine's telemetry-on process serves (~2,200
# req/s in the closed loop on the slowest seen), so it is never saturated. There its CPU a
# request varied +-10-30 us from probe to probe (2026-12-03, probes of 8 s: telemetry's cost by
# piece, docs/capacity.md), against +-60 in the closed loop, where the box's other work takes
# turns with it.
FIXED_RATE = 1_000
PRODUCTS = 50
UNLIMITED = {
    "CLICKPULSE_RATE_LIMIT_ANONYMOUS": "1000000000/minute",
    "CLICKPULSE_RATE_LIMIT_USER": "1000000000/minute",
    # All 20 VUs in flight at once: with the services' 8, 12 would wait in admission control's
    # queue on every request (a future and a timer each), which is not the request path's cost.
    "CLICKPULSE_MAX_IN_FLIGHT": "64",
}


@contextlib.contextmanager
def crud_processes(
    settings: Settings, variants: dict[str, tuple[Checkout, str]]
) -> Iterator[tuple[dict[str, str], dict[str, psutil.Process]]]:
    """One extra CRUD API process per variant (a checkout and CLICKPULSE_TELEMETRY on/off) on
    a free port: their URLs and processes by variant name."""
    # 20 VUs from one address far exceed the per-caller rate limits (600/minute anonymous): with
    # them, most requests measured were cheap 429s. These processes serve only the benchmark.
    env = {**os.environ, **settings.service_env(), **UNLIMITED}
    servers, urls = [], {}
    for name, (checkout, telemetry) in variants.items():
        port = free_port()
        servers.append(
            start_uvicorn(
                checkout,
                CRUD_APP,
                settings.host,
                port,
                {**env, "CLICKPULSE_TELEMETRY": telemetry},
            )
        )
        urls[name] = f"http://{settings.host}:{port}"
    try:
        for url in urls.values():
            wait_healthy(url)
        processes = {
            name: psutil.Process(server.pid) for name, server in zip(urls, servers, strict=True)
        }
        yield urls, processes
    finally:
        for server in servers:
            stop(server)


@functools.cache
def _product_ids() -> list[int]:
    """The products the probes read: the load generator's (made first on a fresh stack). Once
    per bench run: seeding signs in and lists the catalogue, and the probes only read it."""
    return seed(load_config())[1][:PRODUCTS]


def probe_rounds(
    urls: dict[str, str],
    processes: dict[str, psutil.Process],
    order: list[str],
    target: str,
    duration: str,
    rounds: int,
    box: dict[str, psutil.Process] | None = None,
    rate: int = 0,
) -> dict[str, list[dict[str, float]]]:
    """`rounds` probes of each variant, in `order` within each round (closed loop, or at
    `rate`); with `box`, the CPU of those processes (and of k6 and the probed service's relay)
    per request of each probe."""
    results: dict[str, list[dict[str, float]]] = {name: [] for name in order}
    product_ids = _product_ids()
    # Each probe ends once the pipeline has finished its spans (`_probe`): otherwise every "off"
    # probe pays for the "on" probe before it, which flatters the ratio. The first one waits
    # for whatever ran before.
    time.sleep(SETTLE_S)
    for _ in range(rounds):  # alternate, so drift on the box hits every variant alike
        for name in order:
            results[name].append(
                _probe(urls[name], target, duration, 20, processes[name], product_ids, box, rate)
            )
    return results


def bench_overhead(
    settings: Settings, duration: str, rounds: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The on/off table, where the box's CPU went per request (`_box_rows`), and the service's
    CPU per request at a fixed rate (`_fixed_rate_row`)."""
    variants = {"on": (CURRENT, "on"), "off": (CURRENT, "off")}
    rows, box, fixed = [], {}, []
    with crud_processes(settings, variants) as (urls, processes):
        stack = stack_processes(settings)
        for endpoint, target in OVERHEAD_TARGETS.items():
            results = probe_rounds(urls, processes, ["off", "on"], target, duration, rounds, stack)
            rows.append({"endpoint": endpoint, **_overhead_row(results)})
            box[endpoint] = results
        endpoint, target = next(iter(OVERHEAD_TARGETS.items()))  # the cheapest
        at_rate = probe_rounds(
            urls, processes, ["off", "on"], target, duration, rounds, rate=FIXED_RATE
        )
        fixed.append({"endpoint": endpoint, **_fixed_rate_row(at_rate)})
    return rows, _box_rows(box), fixed


def _box_of(probe: dict[str, float]) -> dict[str, float]:
    """A probe's CPU us per request by process tree, and the whole box's."""
    box = {k.removeprefix("box_us:"): v for k, v in probe.items() if k.startswith("box_us:")}
    return {**box, "whole box": sum(box.values())}


def _box_rows(results: dict[str, dict[str, list[dict[str, float]]]]) -> list[dict[str, Any]]:
    """CPU us per request of each process tree on the box (medians over the probes), telemetry
    off and on, by endpoint: what telemetry costs beyond the service process's own share, and
    why the on/off ratio is below that share's ratio (the 2 cores are shared)."""
    boxes = {
        endpoint: {mode: [_box_of(probe) for probe in by_mode[mode]] for mode in ("off", "on")}
        for endpoint, by_mode in results.items()
    }
    names = list(next(iter(boxes.values()))["off"][0])
    return [
        {
            "process (tree)": name,
            **{
                f"{endpoint} {mode}": round(statistics.median(box[name] for box in by_mode[mode]))
                for endpoint, by_mode in boxes.items()
                for mode in ("off", "on")
            },
        }
        for name in names
    ]


def _overhead_row(results: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    # Medians, and the ratio of each back-to-back pair: this box's speed drifts by 15-25 %
    # between minutes, which a single pair or a mean over rounds would report as overhead.
    rps = {m: statistics.median(r["rps"] for r in rs) for m, rs in results.items()}
    p99 = {m: statistics.median(r["p99_ms"] for r in rs) for m, rs in results.items()}
    cpu = {m: statistics.median(r["cpu_ms"] for r in rs) for m, rs in results.items()}
    pairs = zip(results["on"], results["off"], strict=True)
    ratios = sorted(on["rps"] / off["rps"] for on, off in pairs)
    return {
        "req/s telemetry off": round(rps["off"]),
        "req/s telemetry on": round(rps["on"]),
        "throughput ratio on/off (median of pairs)": round(statistics.median(ratios), 3),
        "pair ratios min-max": f"{ratios[0]:.2f}-{ratios[-1]:.2f}",
        "p99 ms off": round(p99["off"], 1),
        "p99 ms on": round(p99["on"], 1),
        "p99 delta ms": round(p99["on"] - p99["off"], 1),
        "service CPU ms/request off": round(cpu["off"], 2),
        "service CPU ms/request on": round(cpu["on"], 2),
    }


def _fixed_rate_row(results: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Telemetry's CPU per request in the service process and in its relay, medians of the
    probes at FIXED_RATE, with the spread of the rounds' differences."""
    own = {
        mode: [probe["box_us:the probed service process"] for probe in probes]
        for mode, probes in results.items()
    }
    relay = statistics.median(probe["box_us:its span relay"] for probe in results["on"])
    deltas = sorted(on - off for on, off in zip(own["on"], own["off"], strict=True))
    off, on = statistics.median(own["off"]), statistics.median(own["on"])
    return {
        "req/s": FIXED_RATE,
        "service process us/request off": round(off),
        "service process us/request on": round(on),
        "its span relay us/request": round(relay),
        "telemetry us/request (process + relay)": round(on - off + relay),
        "round differences on-off min-max": f"{deltas[0]:+.0f} to {deltas[-1]:+.0f}",
    }


def section(settings: Settings, quick: bool, note: str) -> str:
    pairs = 1 if quick else 12
    overhead, box, fixed = bench_overhead(settings, "5s", pairs)
    console.print(overhead)
    console.print(box)
    console.print(fixed)
    span_cost = bench_span_cost(2_000 if quick else 20_000)
    console.print(span_cost)
    return (
        "## 2. Instrumentation overhead\n\nThe same CRUD endpoints on two extra"
        f" processes, telemetry on and off,\neach measured in {pairs} back-to-back pairs of"
        " 5 s with k6 (20 VUs, closed model), each pair after the\npipeline has settled;"
        " medians. CPU per request is the service's own (span export\nincluded: its"
        " span relay child process), from the kernel's counters.\n\n"
        + md_table(overhead)
        + "\n\nWhere the box's CPU goes meanwhile, in us per request (medians over the"
        " same probes; each\nprobe counted until the pipeline has finished its spans,"
        " 2.5 s after k6 stops). The probed\nprocess keeps about one core busy (its CPU"
        " per request x req/s); the rest shares the\nother core, and what does not fit"
        " there takes from the probed process. The stack's own\nservices and monitor idle"
        " meanwhile.\n\n"
        + md_table(box)
        + f"\n\nThe service's CPU per request at a fixed {FIXED_RATE:,} req/s (k6's open model,"
        f" the same processes,\n{pairs} rounds of 5 s, off and on in turn; medians): below"
        " saturation, so the probed process's\nCPU a request is its own work, not also the"
        " closed loop's turns with the box's other work;\nthe spread of the rounds'"
        " differences says how far to trust it.\n\n"
        + md_table(fixed)
        + "\n\nWhere the time goes, in-process (`clickpulse_bench/span_cost.py`): an app"
        " shaped like the\ncheapest endpoint called through ASGI, no network, no"
        " database, nothing else on the CPU.\nOn the loaded box the same work costs"
        " more (the collector and ClickHouse share the 2 cores).\n\n" + md_table(span_cost) + note
    )
