"""Section 2: instrumentation overhead, the same CRUD endpoints on two extra processes with
telemetry on and off (k6, closed model), beside the in-process span cost (span_cost.py)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
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


def _probe(
    base_url: str,
    target: str,
    duration: str,
    vus: int,
    server: psutil.Process,
    product_ids: list[int],
) -> dict[str, float]:
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
    cpu_after = _tree_cpu(server)
    cpu_s = sum(after - cpu_before.get(pid, 0.0) for pid, after in cpu_after.items())
    return {
        # The service's own CPU per request (user + system, its span export included, in an
        # export thread or, since the span relay, in a child process): the cost of telemetry
        # itself, whatever else the box is doing.
        "cpu_ms": cpu_s * 1000 / metrics["http_reqs"]["values"]["count"],
        "rps": metrics["http_reqs"]["values"]["rate"],
        "p99_ms": metrics["http_req_duration"]["values"]["p(99)"],
    }


# The cheapest endpoint (one row by primary key: the worst case for relative overhead) and a
# page of 20 products.
OVERHEAD_TARGETS = {
    "GET /products/{product_id}": "",
    "GET /products?limit=20": "/products?limit=20",
}


SETTLE_S = 2.5
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
) -> dict[str, list[dict[str, float]]]:
    """`rounds` probes of each variant, in `order` within each round."""
    results: dict[str, list[dict[str, float]]] = {name: [] for name in order}
    product_ids = _product_ids()
    for _ in range(rounds):  # alternate, so drift on the box hits every variant alike
        for name in order:
            # Let the collector and ClickHouse finish the previous probe's spans (SDK
            # batch 0.5 s, collector batch 1 s): otherwise every "off" probe pays for
            # the "on" probe before it, which flatters the ratio.
            time.sleep(SETTLE_S)
            results[name].append(
                _probe(urls[name], target, duration, 20, processes[name], product_ids)
            )
    return results


def bench_overhead(settings: Settings, duration: str, rounds: int) -> list[dict[str, Any]]:
    variants = {"on": (CURRENT, "on"), "off": (CURRENT, "off")}
    rows = []
    with crud_processes(settings, variants) as (urls, processes):
        for endpoint, target in OVERHEAD_TARGETS.items():
            results = probe_rounds(urls, processes, ["off", "on"], target, duration, rounds)
            rows.append({"endpoint": endpoint, **_overhead_row(results)})
    return rows


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


def section(settings: Settings, quick: bool, note: str) -> str:
    pairs = 1 if quick else 12
    overhead = bench_overhead(settings, "5s", pairs)
    console.print(overhead)
    span_cost = bench_span_cost(2_000 if quick else 20_000)
    console.print(span_cost)
    return (
        "## 2. Instrumentation overhead\n\nThe same CRUD endpoints on two extra"
        f" processes, telemetry on and off,\neach measured in {pairs} back-to-back pairs of"
        " 5 s with k6 (20 VUs, closed model), each pair after the\npipeline has settled;"
        " medians. CPU per request is the service's own (span export\nincluded: its"
        " span relay child process), from the kernel's counters.\n\n"
        + md_table(overhead)
        + "\n\nWhere the time goes, in-process (`clickpulse_bench/span_cost.py`): an app"
        " shaped like the\ncheapest endpoint called through ASGI, no network, no"
        " database, nothing else on the CPU.\nOn the loaded box the same work costs"
        " more (the collector and ClickHouse share the 2 cores).\n\n" + md_table(span_cost) + note
    )
