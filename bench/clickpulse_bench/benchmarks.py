"""`nox -s bench`: ingest throughput and lag, instrumentation overhead, dashboard query
latency on 10M rows, load-generator accuracy, and footprint; each printed as it finishes and
all written to docs/benchmarks.md with the machine, versions and command. Not tests: nothing
here asserts a timing."""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import httpx
import psutil
from clickpulse_grafana.dashboards import DASHBOARDS
from clickpulse_grafana.macros import TimeRange, Variables, expand
from clickpulse_load.audit import audit_run
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from rich.console import Console

from clickpulse.stack.clickhouse_client import admin_client, reader_client
from clickpulse.stack.components import ClickHouse, all_components
from clickpulse.stack.settings import REPO_ROOT, Settings
from clickpulse_bench.span_cost import bench_span_cost

console = Console()
DOC = REPO_ROOT / "docs" / "benchmarks.md"
BENCH_DIR = REPO_ROOT / "bench"
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _k6() -> str:
    return str(Path(sys.executable).with_name("k6"))


# --- 1. ingest ------------------------------------------------------------------------------


def _span_batch(run_id: str, size: int, now_ns: int) -> bytes:
    """One OTLP export of `size` server spans shaped like the services' (same attributes)."""

    def kv(key: str, value: str) -> common_pb2.KeyValue:
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))

    spans = []
    for _ in range(size):
        duration = random.randint(300_000, 30_000_000)
        product = str(random.randint(1, 500))
        spans.append(
            trace_pb2.Span(
                trace_id=random.randbytes(16),
                span_id=random.randbytes(8),
                name="GET /products/{product_id}",
                kind=trace_pb2.Span.SPAN_KIND_SERVER,
                start_time_unix_nano=now_ns - duration,
                end_time_unix_nano=now_ns,
                attributes=[
                    kv("http.route", "/products/{product_id}"),
                    kv("http.request.method", "GET"),
                    kv("http.response.status_code", "200"),
                    kv("url.path", f"/products/{product}"),
                    kv("client.address", f"10.1.{random.randint(0, 255)}.{random.randint(1, 254)}"),
                    kv("app.region", "us-east"),
                    kv("user.id", str(random.randint(1, 5000))),
                    kv("session.id", uuid.uuid4().hex),
                    kv("app.product.id", product),
                    kv("app.product.category", "books"),
                    kv("user_agent.original", "bench/1.0"),
                    kv("http.request.body.size", "0"),
                    kv("http.response.body.size", "180"),
                    kv("app.load.run_id", run_id),
                ],
            )
        )
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(
                    attributes=[
                        kv("service.name", "bench-ingest"),
                        kv("service.namespace", "clickpulse"),
                    ]
                ),
                scope_spans=[trace_pb2.ScopeSpans(spans=spans)],
            )
        ]
    )
    return bytes(request.SerializeToString())


def bench_ingest(settings: Settings, seconds: float, target_rate: int) -> dict[str, Any]:
    """Offers `target_rate` spans/s for `seconds`. Batches are serialized before the clock
    starts, each stamped with the moment it is due, so the generator does not compete with the
    collector and ClickHouse for the two cores while it sends."""
    run_id = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    batch = 1000
    count = int(seconds * target_rate / batch)
    probe = time.perf_counter()
    for _ in range(3):
        _span_batch(run_id + "-probe", batch, time.time_ns())
    per_batch_s = (time.perf_counter() - probe) / 3
    # The first batch is due once every batch is serialized (with a margin).
    start_ns = time.time_ns() + int((2 + count * per_batch_s * 1.5) * 1e9)
    with console.status(f"serializing {count} batches of {batch} spans"):
        payloads = [
            _span_batch(run_id, batch, start_ns + int(i * batch / target_rate * 1e9))
            for i in range(count)
        ]
    while time.time_ns() < start_ns - int(batch / target_rate * 1e9):
        time.sleep(0.01)
    channel = grpc.insecure_channel(f"{settings.host}:{settings.ports.otlp_grpc}")
    export = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
    next_index = 0
    lock = threading.Lock()
    started = time.monotonic()

    def sender() -> None:
        nonlocal next_index
        while True:
            with lock:
                index = next_index
                next_index += 1
            if index >= count:
                return
            due = start_ns + int(index * batch / target_rate * 1e9)
            time.sleep(max(0.0, (due - time.time_ns()) / 1e9))
            for attempt in range(50):
                try:
                    export(payloads[index], timeout=30)
                    break
                except grpc.RpcError:  # refused by memory_limiter: back off like an SDK
                    time.sleep(0.2 * (attempt + 1))

    senders = [threading.Thread(target=sender) for _ in range(8)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    send_s = time.monotonic() - started
    sent = count * batch
    audit = audit_run(run_id, sent, timeout_s=180, settings=settings)
    total_s = time.monotonic() - started
    admin = admin_client(settings)
    for table, column in (
        ("otel.otel_traces", "ServiceName"),
        ("analytics.request_metrics", "service_name"),
        ("analytics.request_metrics_1m", "service_name"),
        ("analytics.request_metrics_1h", "service_name"),
        ("analytics.audience_1h", "service_name"),
    ):
        admin.command(f"DELETE FROM {table} WHERE {column} = 'bench-ingest'")
    return {
        "target spans/s": target_rate,
        "sent": sent,
        "landed": audit.landed,
        "lost": audit.missing,
        "offered spans/s": round(sent / send_s),
        "sustained spans/s (sent -> all landed)": round(audit.landed / total_s),
        "lag p50 s": round(audit.lag_p50_s or 0, 2),
        "lag p99 s": round(audit.lag_p99_s or 0, 2),
        "lag max s": round(audit.lag_max_s or 0, 2),
    }


# --- 2. instrumentation overhead --------------------------------------------------------------


def _probe(
    base_url: str, target: str, duration: str, vus: int, server: psutil.Process
) -> dict[str, float]:
    cpu_before = sum(server.cpu_times()[:2])
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        subprocess.run(
            [
                _k6(),
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
        port = _free_port()
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


# --- 3. dashboard queries ---------------------------------------------------------------------

GENERATE_ROWS = """
INSERT INTO analytics.request_metrics (timestamp, service_name, endpoint, method, status_code,
    response_time_ms, request_size, response_size, user_id, session_id, client_ip, region,
    user_agent, product_id, product_category, transaction_amount, cart_items_count, order_id,
    run_id, trace_id, span_id)
SELECT
    now64(6) - toIntervalMicrosecond(rand64(1) % (7 * 86400 * 1000000)) AS timestamp,
    ['crud-api', 'ecommerce-api'][1 + (number % 5 = 0)] AS service_name,
    ['/products/{product_id}', '/products', '/users', '/cart', '/checkout', '/orders',
     '/users/{user_id}'][1 + rand(2) % 7] AS endpoint,
    if(endpoint IN ('/cart', '/checkout') AND rand(3) % 2 = 0, 'POST', 'GET') AS method,
    multiIf(rand(4) % 1000 < 5, 500, rand(4) % 1000 < 40, 404, endpoint = '/checkout', 201, 200)
        AS status_code,
    exp(randNormal(1.2, 0.8)) AS response_time_ms,
    if(method = 'POST', 40 + rand(5) % 200, 0) AS request_size,
    200 + rand(6) % 4000 AS response_size,
    toString(1 + rand(7) % 50000) AS user_id,
    toString(cityHash64(user_id, intDiv(toUnixTimestamp(timestamp), 1800))) AS session_id,
    IPv4NumToString(toUInt32(167772160 + rand(8) % 327680)) AS client_ip,
    ['us-east', 'us-west', 'eu-west', 'ap-south', 'sa-east'][1 + rand(9) % 5] AS region,
    'Mozilla/5.0 bench' AS user_agent,
    if(endpoint = '/products/{product_id}',
       toNullable(1 + toUInt64(pow(rand(10) % 1000, 2) / 1000)), NULL) AS product_id,
    if(product_id IS NULL, NULL, ['books', 'toys', 'home', 'sports'][1 + product_id % 4])
        AS product_category,
    if(endpoint = '/checkout' AND status_code < 400,
       toNullable(round(5 + rand(11) % 50000 / 100, 2)), NULL) AS transaction_amount,
    if(endpoint IN ('/cart', '/checkout'), toNullable(toUInt16(1 + rand(12) % 6)), NULL)
        AS cart_items_count,
    if(transaction_amount IS NULL, NULL, toNullable(number)) AS order_id,
    'bench' AS run_id,
    hex(randomString(16)) AS trace_id,
    hex(randomString(8)) AS span_id
FROM numbers({rows})
"""

RAW_TWINS = {
    "Requests per second by service": """
SELECT toStartOfInterval(timestamp, INTERVAL greatest($__interval_s, 60) second) AS time,
       service_name, count() / greatest($__interval_s, 60) AS rps
FROM analytics.request_metrics WHERE $__timeFilter(timestamp)
GROUP BY time, service_name ORDER BY time""",
    "Latency: average and p95": """
SELECT toStartOfInterval(timestamp, INTERVAL greatest($__interval_s, 60) second) AS time,
       avg(response_time_ms) AS avg_ms, quantile(0.95)(response_time_ms) AS p95_ms
FROM analytics.request_metrics WHERE $__timeFilter(timestamp)
GROUP BY time ORDER BY time""",
    "Revenue over time": """
SELECT toStartOfInterval(timestamp, INTERVAL greatest($__interval_s, 60) second) AS time,
       sum(transaction_amount) AS revenue
FROM analytics.request_metrics WHERE $__timeFilter(timestamp) AND status_code < 400
GROUP BY time ORDER BY time""",
    "Active users": """
SELECT uniq(user_id) FROM analytics.request_metrics
WHERE $__timeFilter(timestamp) AND user_id != ''""",
    "Active users over time": """
SELECT toStartOfInterval(timestamp, INTERVAL greatest($__interval_s, 60) second) AS time,
       uniq(user_id) AS users
FROM analytics.request_metrics WHERE $__timeFilter(timestamp) AND user_id != ''
GROUP BY time ORDER BY time""",
    "Status codes": """
SELECT toString(status_code) AS status, count() AS requests FROM analytics.request_metrics
WHERE $__timeFilter(timestamp) GROUP BY status ORDER BY requests DESC""",
    "Top 10 endpoints": """
SELECT concat(method, ' ', endpoint) AS route, count() AS requests
FROM analytics.request_metrics WHERE $__timeFilter(timestamp) AND endpoint != ''
GROUP BY route ORDER BY requests DESC LIMIT 10""",
    "Active users by region": """
SELECT region, uniq(user_id) AS users FROM analytics.request_metrics
WHERE $__timeFilter(timestamp) AND user_id != '' GROUP BY region ORDER BY users DESC""",
    "Response time per endpoint": """
SELECT concat(method, ' ', endpoint) AS route, count() AS request_count,
       avg(response_time_ms) AS avg_ms,
       quantiles(0.5, 0.95, 0.99)(response_time_ms) AS latency_quantiles_ms
FROM analytics.request_metrics WHERE $__timeFilter(timestamp) AND endpoint != ''
GROUP BY route ORDER BY latency_quantiles_ms[2] DESC""",
    "Throughput by service": """
SELECT toStartOfInterval(timestamp, INTERVAL greatest($__interval_s, 60) second) AS time,
       service_name, count() AS requests
FROM analytics.request_metrics WHERE $__timeFilter(timestamp)
GROUP BY time, service_name ORDER BY time""",
    "Error rate (5xx share)": """
SELECT toStartOfInterval(timestamp, INTERVAL greatest($__interval_s, 60) second) AS time,
       countIf(status_code >= 500) / count() AS error_rate
FROM analytics.request_metrics WHERE $__timeFilter(timestamp) GROUP BY time ORDER BY time""",
    "Errors per minute": """
SELECT toStartOfInterval(timestamp, INTERVAL greatest($__interval_s, 60) second) AS time,
       countIf(status_code >= 500) * 60 / greatest($__interval_s, 60) AS server_errors,
       countIf(status_code >= 400 AND status_code < 500) * 60 / greatest($__interval_s, 60)
           AS client_errors
FROM analytics.request_metrics WHERE $__timeFilter(timestamp) GROUP BY time ORDER BY time""",
    "Errors by endpoint": """
SELECT concat(method, ' ', endpoint) AS route, status_code, count() AS requests
FROM analytics.request_metrics WHERE $__timeFilter(timestamp) AND status_code >= 400
GROUP BY route, status_code ORDER BY requests DESC LIMIT 50""",
    "Revenue": """
SELECT sumIf(transaction_amount, status_code < 400) AS revenue FROM analytics.request_metrics
WHERE $__timeFilter(timestamp)""",
    "Orders": """
SELECT countIf(order_id IS NOT NULL AND transaction_amount IS NOT NULL AND status_code < 400)
FROM analytics.request_metrics WHERE $__timeFilter(timestamp)""",
    "Checkout conversion": """
SELECT uniqIf(session_id, endpoint = '/checkout' AND status_code < 400)
       / greatest(uniqIf(session_id, method = 'POST' AND endpoint = '/cart'
                         AND status_code < 400), 1) AS conversion
FROM analytics.request_metrics WHERE $__timeFilter(timestamp) AND session_id != ''""",
    "Funnel: sessions that viewed, added to cart, checked out": """
SELECT uniqIf(session_id, endpoint = '/products/{product_id}'),
       uniqIf(session_id, method = 'POST' AND endpoint = '/cart' AND status_code < 400),
       uniqIf(session_id, endpoint = '/checkout' AND status_code < 400)
FROM analytics.request_metrics WHERE $__timeFilter(timestamp) AND session_id != ''""",
}


def _timed(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, round(0.95 * len(samples)) - 1)]


def bench_dashboards(rows: int, repeat: int) -> tuple[dict[str, Any], list[list[str]]]:
    """On a throw-away ClickHouse (own state folder and ports), so the stack's data is untouched."""
    with tempfile.TemporaryDirectory(prefix="clickpulse-bench-") as tmp:
        saved = dict(os.environ)
        os.environ.update(
            CLICKPULSE_STATE_DIR=tmp,
            CLICKPULSE_CH_HTTP_PORT=str(_free_port()),
            CLICKPULSE_CH_NATIVE_PORT=str(_free_port()),
        )
        settings = Settings.from_env()
        clickhouse = ClickHouse(settings)
        try:
            clickhouse.process.start()
            clickhouse.after_start()
            admin = admin_client(settings)
            started = time.monotonic()
            for offset in range(0, rows, 2_000_000):
                admin.command(
                    GENERATE_ROWS.replace("{rows}", str(min(2_000_000, rows - offset))),
                    settings={"max_insert_threads": 2},
                )
            load_s = time.monotonic() - started
            # What background merges reach after a while; the raw table is left as loaded.
            for rollup in ("request_metrics_1m", "request_metrics_1h", "audience_1h"):
                admin.command(f"OPTIMIZE TABLE analytics.{rollup} FINAL")
            reader = reader_client(settings)
            now = datetime.now(UTC)
            week = TimeRange(now - timedelta(days=7), now)
            # The other ranges people look at: a day (hourly distinct-count states, minute
            # rollup) and an hour (raw rows for distinct counts).
            others = [
                TimeRange(now - timedelta(days=1), now),
                TimeRange(now - timedelta(hours=1), now),
            ]
            table: list[list[str]] = []
            worst = 0.0
            for board in DASHBOARDS.values():
                for panel in board.panels:
                    variables = (
                        Variables({"trace_id": "00"}) if "${trace_id" in panel.sql else Variables()
                    )
                    sql = expand(panel.sql, week, variables)
                    p50, p95 = _timed(partial(reader.query, sql), repeat)
                    worst = max(worst, p95)
                    ratio = ""
                    if panel.title in RAW_TWINS:
                        raw_sql = expand(RAW_TWINS[panel.title], week)
                        _, raw_p95 = _timed(partial(reader.query, raw_sql), repeat)
                        ratio = f"{raw_p95 / p95:.1f}x faster than raw ({raw_p95:.0f} ms)"
                    narrower = [
                        _timed(partial(reader.query, expand(panel.sql, r, variables)), repeat)[1]
                        for r in others
                    ]
                    worst = max(worst, *narrower)
                    table.append(
                        [board.title, panel.title, f"{p50:.1f}", f"{p95:.1f}"]
                        + [f"{p:.1f}" for p in narrower]
                        + [ratio]
                    )
                    console.print(
                        f"  {board.title}: {panel.title}: p50 {p50:.1f} ms, p95 {p95:.1f} ms"
                        f" (day {narrower[0]:.1f}, hour {narrower[1]:.1f}) {ratio}"
                    )
        finally:
            clickhouse.process.stop()
            os.environ.clear()
            os.environ.update(saved)
    return {
        "rows": rows,
        "load seconds": round(load_s, 1),
        "rows/s loaded": round(rows / load_s),
        "worst panel p95 ms": round(worst, 1),
    }, table


# --- 4. load accuracy ---------------------------------------------------------------------------


def bench_load_accuracy(rates: list[int], duration: str) -> list[dict[str, Any]]:
    results = []
    for rate in rates:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.json"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "clickpulse_load",
                    "--rps",
                    str(rate),
                    "--duration",
                    duration,
                    "--json",
                    str(report),
                ],
                capture_output=True,
                check=False,
                timeout=900,
            )
            facts = json.loads(report.read_text()) if report.exists() else {}
        audit = facts.get("audit", {})
        results.append(
            {
                "target req/s": rate,
                "achieved req/s": round(facts.get("achieved_rps", 0), 1),
                "achieved/target": round(facts.get("achieved_rps", 0) / rate, 3),
                "dropped iterations": facts.get("dropped_iterations"),
                "error rate": round(facts.get("error_rate") or 0, 4),
                "sent": audit.get("sent"),
                "landed": audit.get("landed"),
                "lag p99 s": round(audit.get("lag_p99_s") or 0, 2),
            }
        )
        console.print(f"  {rate} req/s: {results[-1]}")
    return results


# --- 5. footprint -------------------------------------------------------------------------------


def bench_footprint(settings: Settings) -> dict[str, Any]:
    stack = [sys.executable, "-m", "clickpulse.stack"]
    subprocess.run([*stack, "down"], check=True, capture_output=True)
    started = time.monotonic()
    subprocess.run([*stack, "up"], check=True, capture_output=True)
    up_s = time.monotonic() - started
    time.sleep(15)
    rss = {}
    for component in all_components(settings):
        proc = component.process.running()
        if proc is None:
            continue
        family = [proc, *proc.children(recursive=True)]
        rss[component.name] = round(
            sum(p.memory_info().rss for p in family if p.is_running()) / 2**20
        )
    return {
        "warm `nox -s up` seconds": round(up_s, 1),
        **{f"idle RSS MiB {k}": v for k, v in rss.items()},
    }


# --- report -------------------------------------------------------------------------------------


def _versions(settings: Settings) -> dict[str, str]:
    k6 = subprocess.run([_k6(), "version"], capture_output=True, text=True).stdout.strip()
    return {
        "machine": f"{platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, {platform.platform()}",
        "ClickHouse": str(reader_client(settings).query("SELECT version()").result_rows[0][0]),
        "collector": "clickpulse-otelcol 0.165.0 (otel-collector/builder-config.yaml)",
        "k6": k6.splitlines()[0] if k6 else "?",
        "Python": platform.python_version(),
    }


def _md_table(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def _write_doc(command: str, versions: dict[str, str], sections: dict[str, str]) -> None:
    """Writes docs/benchmarks.md; with --only, the other sections of the file are kept."""
    kept: dict[str, str] = {}
    if DOC.exists():
        for chunk in re.split(r"\n(?=## \d\. )", DOC.read_text()):
            match = re.match(r"## (\d)\. ", chunk)
            if match:
                kept[match.group(1)] = chunk.strip()
    kept.update(sections)
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(
        "# Benchmarks\n\nEvery component runs on the same machine. Last run: `"
        + command
        + "` on "
        + datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        + " (each section names its own command when it was run alone).\n\n"
        + "\n".join(f"- {k}: {v}" for k, v in versions.items())
        + "\n\n"
        + "\n\n".join(kept[k] for k in sorted(kept))
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nox -s bench --", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller and shorter, for a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        choices=["ingest", "overhead", "dashboards", "load", "footprint"],
        help="run only these (repeatable); the other sections of docs/benchmarks.md are kept",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    wanted = set(args.only or ["ingest", "overhead", "dashboards", "load", "footprint"])
    settings = Settings.from_env()
    given = sys.argv[1:] if argv is None else argv
    command = "nox -s bench" + (" -- " + " ".join(given) if given else "")
    note = f"\n\nCommand: `{command}`."
    sections: dict[str, str] = {}

    if "ingest" in wanted:
        console.rule("1. ingest")
        ingest = bench_ingest(settings, seconds=10 if quick else 30, target_rate=30_000)
        console.print(ingest)
        sections["1"] = (
            "## 1. Ingest (OTLP -> collector -> ClickHouse, all materialized views on)\n\n"
            "Spans shaped like the services' (same attributes), serialized beforehand and sent\n"
            "over OTLP/gRPC in batches of 1,000, each when due, by 8 threads; counted in\n"
            "`analytics.request_metrics` by run id. Lag = `ingested_at` - span end.\n\n"
            + _md_table([ingest])
            + note
        )
    if "overhead" in wanted:
        console.rule("2. instrumentation overhead")
        pairs = 1 if quick else 12
        overhead = bench_overhead(settings, "5s", pairs)
        console.print(overhead)
        span_cost = bench_span_cost(2_000 if quick else 20_000)
        console.print(span_cost)
        sections["2"] = (
            "## 2. Instrumentation overhead\n\nThe same CRUD endpoints on two extra"
            f" processes, telemetry on and off,\neach measured in {pairs} back-to-back pairs of"
            " 5 s with k6 (20 VUs, closed model), each pair after the\npipeline has settled;"
            " medians. CPU per request is the service process's own (span\nexport thread"
            " included), from the kernel's counters.\n\n"
            + _md_table(overhead)
            + "\n\nWhere the time goes, in-process (`clickpulse_bench/span_cost.py`): an app"
            " shaped like the\ncheapest endpoint called through ASGI, no network, no"
            " database, nothing else on the CPU.\nOn the loaded box the same work costs"
            " more (the export thread shares the GIL with the\nrequest loop, and the"
            " collector and ClickHouse share the 2 cores).\n\n" + _md_table(span_cost) + note
        )
    if "dashboards" in wanted:
        console.rule("3. dashboard queries")
        summary, panels = bench_dashboards(1_000_000 if quick else 10_000_000, 5 if quick else 20)
        sections["3"] = (
            f"## 3. Dashboard queries\n\n{summary['rows']:,} generated `request_metrics` rows"
            " over 7 days "
            f"(loaded with `INSERT ... SELECT FROM numbers()` in {summary['load seconds']} s,"
            f" {summary['rows/s loaded']:,} rows/s; the rollups fill through their views),"
            " every panel over the 7 days (and the last day, the last hour), macros expanded, run"
            " as the analyst, 20 times each. Worst p95 over all panels and ranges:"
            f" {summary['worst panel p95 ms']} ms.\n\n"
            "| dashboard | panel | p50 ms | p95 ms | p95 ms, 1 day | p95 ms, 1 hour"
            " | rollup vs raw (7 days) |\n|---|---|---|---|---|---|---|\n"
            + "\n".join("| " + " | ".join(row) + " |" for row in panels)
            + note
        )
    if "load" in wanted:
        console.rule("4. load accuracy")
        accuracy = bench_load_accuracy(
            [100] if quick else [100, 500, 1000], "20s" if quick else "60s"
        )
        sections["4"] = (
            "## 4. Load accuracy (`nox -s load` against the whole local stack)\n\n"
            + _md_table(accuracy)
            + note
        )
    if "footprint" in wanted:
        console.rule("5. footprint")
        footprint = bench_footprint(settings)
        console.print(footprint)
        sections["5"] = "## 5. Footprint\n\n" + _md_table([footprint]) + note

    _write_doc(command, _versions(settings), sections)
    console.print(f"wrote {DOC}")
    return 0
