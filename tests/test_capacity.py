"""Capacity behaviour against real service processes beside the stack's: admission control past
a small in-flight limit, and telemetry that stays right with several worker processes."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from clickhouse_connect.driver.client import Client
from conftest import bearer, serve_crud_api

from clickpulse.stack.settings import Settings


def _product(settings: Settings, admin_token: str) -> int:
    crud = f"http://{settings.host}:{settings.ports.crud_api}"
    body = {"name": "Capacity Lamp", "category": "home", "price": "5.00", "stock": 10}
    response = httpx.post(crud + "/products", json=body, headers=bearer(admin_token))
    assert response.status_code == 201, response.text
    product_id: int = response.json()["id"]
    return product_id


def test_past_its_in_flight_limit_a_service_sheds_fast_and_the_shed_requests_are_spans(
    settings: Settings, reader: Client, admin_token: str, wait_for: Callable[..., Any]
) -> None:
    product_id = _product(settings, admin_token)
    session = f"shed-{uuid.uuid4().hex[:12]}"
    with serve_crud_api(settings, env={"CLICKPULSE_MAX_IN_FLIGHT": "1"}) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        # One request in flight that stays there: its body never comes (an admin's, so that it
        # gets past the guard to wait for its body).
        with socket.create_connection((settings.host, port)) as stuck:
            stuck.sendall(
                b"POST /products HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {admin_token}\r\n".encode()
                + b"Content-Length: 100\r\n\r\n"
            )
            time.sleep(0.3)
            with httpx.Client(base_url=url, headers={"X-Session-Id": session}) as client:
                shed = [client.get(f"/products/{product_id}") for _ in range(20)]
                # The health check is never shed: a busy process is alive.
                assert client.get("/health").status_code == 200
        assert {r.status_code for r in shed} == {503}
        first = shed[0]
        assert first.headers["Retry-After"] == "1"
        assert "over capacity" in first.json()["detail"]
        # Each waited at most the queue's burst wait for a slot (150 ms; after the first ran
        # out, the standing queue's 20 ms): well under the 1 s it tells the client to wait.
        assert max(r.elapsed.total_seconds() for r in shed) < 0.5
        # Once the stuck request is gone, the same process serves again.
        ok = httpx.get(f"{url}/products/{product_id}", headers={"X-Session-Id": session})
        assert ok.status_code == 200

    def landed() -> list[tuple[Any, ...]]:
        return reader.query(
            "SELECT status_code, endpoint, count() FROM analytics.request_metrics"
            " WHERE session_id = {s:String} GROUP BY status_code, endpoint ORDER BY status_code",
            parameters={"s": session},
        ).result_rows

    rows = wait_for(lambda: (r := landed()) and sum(c for *_, c in r) == 21 and r, timeout=60)
    assert rows == [(200, "/products/{product_id}", 1), (503, "/products/{product_id}", 20)]
    # The span says why it was shed: no slot came free within the queue's deadline.
    reasons = reader.query(
        "SELECT SpanAttributes['app.shed.reason'], count() FROM otel.otel_traces"
        " WHERE SpanAttributes['session.id'] = {s:String} GROUP BY 1 ORDER BY 1",
        parameters={"s": session},
    ).result_rows
    assert reasons == [("", 1), ("queue_timeout", 20)]


def test_n_worker_processes_are_n_service_instances_in_spans_and_metrics(
    settings: Settings, reader: Client, admin_token: str, wait_for: Callable[..., Any]
) -> None:
    product_id = _product(settings, admin_token)
    session = f"workers-{uuid.uuid4().hex[:12]}"
    with serve_crud_api(settings, workers=2, env={"CLICKPULSE_METRICS_INTERVAL_MS": "1000"}) as (
        url,
        parent,
    ):
        # uvicorn spawns its workers (multiprocessing also starts a resource tracker).
        workers = [c for c in parent.children() if "spawn_main" in " ".join(c.cmdline())]
        assert len(workers) == 2

        def one() -> int:
            # A new connection each time: the kernel hands connections to either worker.
            headers = {"X-Session-Id": session, "Connection": "close"}
            return httpx.get(f"{url}/products/{product_id}", headers=headers).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(lambda _: one(), range(200))) == {200}
        expected = {f"crud-api-{socket.gethostname()}-{w.pid}" for w in workers}

        def instances(query: str) -> set[str]:
            return set(reader.query(query, parameters={"s": session}).result_rows[0][0])

        spans = (
            "SELECT groupUniqArray(ResourceAttributes['service.instance.id'])"
            " FROM otel.otel_traces WHERE SpanAttributes['session.id'] = {s:String}"
        )
        assert wait_for(lambda: instances(spans) == expected, timeout=60), instances(spans)
        metrics = (
            "SELECT groupUniqArray(ResourceAttributes['service.instance.id'])"
            " FROM otel.otel_metrics_gauge WHERE MetricName = 'process.cpu.utilization'"
            " AND ResourceAttributes['service.instance.id'] IN {i:Array(String)}"
        )

        def metric_instances() -> set[str]:
            return set(reader.query(metrics, parameters={"i": sorted(expected)}).result_rows[0][0])

        assert wait_for(lambda: metric_instances() == expected, timeout=60), metric_instances()
