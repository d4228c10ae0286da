"""Section 2: instrumentation overhead, the same CRUD endpoints on two extra processes with
telemetry on and off (k6, closed model), beside the in-process span cost (span_cost.py)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from clickpulse.stack.settings import Settings
from clickpulse_bench.common import BENCH_DIR, console, free_port, k6_binary
from clickpulse_bench.report import md_table
from clickpulse_bench.span_cost import bench_span_cost


def _probe(
    base_url: str, target: str, duration: str, vus: int, server: psutil.Process
) -> dict[str, float]:
    cpu_before = sum(server.cpu_times()[:2])
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
                f"SUMMARY={summary}",
                str(BENCH_DIR / "overhead.js"),
            ],
            check=True,
            capture_output=True,
        )
        metrics = json.loads(summary.read_text())["metrics"]
    cpu_s = sum(server.cpu_times()[:2]) - cpu_before
    return {
        # The service's own CPU per request (user + system, its export thread included): the
        # cost of telemetry itself, whatever else the box is doing.
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


def bench_overhead(settings: Settings, duration: str, rounds: int) -> list[dict[str, Any]]:
    env = {**os.environ, **settings.service_env()}
    servers, urls = [], {}
    for mode in ("on", "off"):
        port = free_port()
        servers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "clickpulse_services.crud.app:app",
                    "--host",
                    settings.host,
                    "--port",
                    str(port),
                    "--no-access-log",
                ],
                env={**env, "CLICKPULSE_TELEMETRY": mode},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        urls[mode] = f"http://{settings.host}:{port}"
    try:
        for url in urls.values():
            for _ in range(100):
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
        processes = dict(
            zip(("on", "off"), (psutil.Process(server.pid) for server in servers), strict=True)
        )
        rows = []
        for endpoint, target in OVERHEAD_TARGETS.items():
            results: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
            for _ in range(rounds):  # alternate, so drift on the box hits both alike
                for mode in ("off", "on"):
                    # Let the collector and ClickHouse finish the previous probe's spans (SDK
                    # batch 0.5 s, collector batch 1 s): otherwise every "off" probe pays for
                    # the "on" probe before it, which flatters the ratio.
                    time.sleep(SETTLE_S)
                    probe = _probe(urls[mode], target, duration, 20, processes[mode])
                    results[mode].append(probe)
            rows.append({"endpoint": endpoint, **_overhead_row(results)})
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)
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
        " medians. CPU per request is the service process's own (span\nexport thread"
        " included), from the kernel's counters.\n\n"
        + md_table(overhead)
        + "\n\nWhere the time goes, in-process (`clickpulse_bench/span_cost.py`): an app"
        " shaped like the\ncheapest endpoint called through ASGI, no network, no"
        " database, nothing else on the CPU.\nOn the loaded box the same work costs"
        " more (the export thread shares the GIL with the\nrequest loop, and the"
        " collector and ClickHouse share the 2 cores).\n\n" + md_table(span_cost) + note
    )
