"""A ClickHouse cluster of 2 shards x 2 copies (`up --shards 2 --copies 2`), as a second stack of
its own (state folder, ports), with the whole pipeline on it: the same migrations rendered per
node, the collector writing through the Distributed tables, k6 and the load audit, and failures
of one copy and of a whole shard."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

from clickpulse.stack.clickhouse_client import admin_client, reader_client
from clickpulse.stack.components import ClickHouse
from clickpulse.stack.processes import free_port, free_port_run
from clickpulse.stack.settings import PORT_VARIABLES, REPO_ROOT, Settings
from clickpulse.stack.topology import Node

# Every port of the stack, from the settings (a port added there gets a free one here too).
PORT_VARS = tuple(name for name, _ in PORT_VARIABLES.values())
READER_TABLES = {
    ("otel", "otel_traces"),
    ("otel", "otel_traces_trace_id_ts"),
    ("otel", "otel_metrics_gauge"),
    ("analytics", "request_metrics"),
    ("analytics", "request_metrics_1m"),
    ("analytics", "request_metrics_1h"),
    ("analytics", "audience_1h"),
}


@dataclass
class Cluster:
    env: dict[str, str]
    settings: Settings

    def stack(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clickpulse.stack", *args],
            env=self.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def load(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "clickpulse_load", *args],
            env={**self.env, "COLUMNS": "160"},
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def node(self, shard: int, copy: int) -> Node:
        return next(n for n in self.settings.clickhouse_nodes if (n.shard, n.copy) == (shard, copy))

    def admin(self, shard: int, copy: int) -> Client:
        return admin_client(self.settings, self.node(shard, copy))

    def kill(self, shard: int, copy: int) -> None:
        """kill -9, as a crash: no shutdown, nothing flushed."""
        ClickHouse(self.settings, self.node(shard, copy)).process.kill()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # Not under pytest's tmp: every pytest session that starts sets /tmp/pytest-of-<user> back
    # to 0700, and postgres, which runs as its own user under root, then loses its way in.
    state = Path(tempfile.mkdtemp(prefix="clickpulse-cluster-"))
    state.chmod(0o755)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith("_PASSWORD")
        and key not in ("CLICKPULSE_CH_SHARDS", "CLICKPULSE_CH_COPIES")
    }
    env.update(
        {
            "CLICKPULSE_STATE_DIR": str(state / "stack"),
            "CLICKPULSE_CH_CLUSTER_BASE_PORT": str(free_port_run(6)),
            "COLUMNS": "200",
            **{name: str(free_port()) for name in PORT_VARS},
        }
    )
    cluster = Cluster(env=env, settings=Settings.from_env())
    try:
        up = cluster.stack("up", "--shards", "2", "--copies", "2")
        assert up.returncode == 0, up.stdout + up.stderr
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            cluster.settings = Settings.from_env()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        yield cluster
    finally:
        cluster.stack("down", timeout=180)
        shutil.rmtree(state, ignore_errors=True)


def _run_count(client: Client, table: str, run_id: str) -> int:
    return int(
        client.query(
            f"SELECT count() FROM {table} WHERE run_id = {{r:String}}", parameters={"r": run_id}
        ).result_rows[0][0]
    )


def _poll(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Waits for `check()` to be truthy; fails saying what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(DatabaseError, OSError):
            value = check()
            if value:
                return value
        if time.monotonic() > deadline:
            pytest.fail(f"within {timeout:.0f}s: {what}")
        time.sleep(0.5)


def _count(client: Client, table: str, column: str, value: str) -> int:
    return int(
        client.query(
            f"SELECT count() FROM {table} WHERE {column} = {{v:String}}", parameters={"v": value}
        ).result_rows[0][0]
    )


def _finish(load: subprocess.Popen[str], report: Path) -> dict[str, Any]:
    output, _ = load.communicate(timeout=300)
    assert load.returncode == 0, output[-3000:]
    facts: dict[str, Any] = json.loads(report.read_text())
    return facts


def test_every_node_has_the_schema_under_the_names_readers_use(cluster: Cluster) -> None:
    for node in cluster.settings.clickhouse_nodes:
        client = admin_client(cluster.settings, node)
        tables = {
            (str(d), str(n)): str(e)
            for d, n, e in client.query(
                "SELECT database, name, engine FROM system.tables"
                " WHERE database IN ('otel', 'analytics', 'shard_otel', 'shard_analytics')"
            ).result_rows
        }
        for database, name in READER_TABLES:
            assert tables[(database, name)] == "Distributed", (node.name, name)
            assert tables[(f"shard_{database}", name)].endswith("MergeTree"), (node.name, name)
        # Views project each node's own rows, between its local tables.
        assert tables[("shard_analytics", "request_metrics_mv")] == "MaterializedView"
        assert ("analytics", "request_metrics_mv") not in tables
        # The Distributed table has the local table's columns and comments.
        columns = client.query(
            "SELECT database, groupArray((name, type)) FROM system.columns"
            " WHERE table = 'request_metrics' AND database IN ('analytics', 'shard_analytics')"
            " GROUP BY database ORDER BY database"
        ).result_rows
        assert columns[0][1] == columns[1][1]
    migrate = cluster.stack("migrate")
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert migrate.stdout.count("nothing pending") == 4, migrate.stdout


def test_the_load_audit_lands_every_request_once_on_both_copies(
    cluster: Cluster, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    facts = _finish(cluster.load("--rps", "40", "--duration", "15s", "--json", str(report)), report)
    audit, run_id = facts["audit"], facts["run_id"]
    assert audit["sent"] > 400
    assert audit["missing"] == 0 and audit["duplicates"] == 0
    per_shard = []
    for shard in (1, 2):
        copies = [
            _run_count(cluster.admin(shard, copy), "shard_analytics.request_metrics", run_id)
            for copy in (1, 2)
        ]
        assert copies[0] == copies[1], f"shard {shard}: the copies differ: {copies}"
        per_shard.append(copies[0])
    # Both shards hold part of the run, and together all of it, once.
    assert min(per_shard) > 0 and sum(per_shard) == audit["landed"]
    # A trace lives on one shard: its spans were sent to the shard of its trace id...
    traces = [
        {
            str(t)
            for (t,) in cluster.admin(shard, 1)
            .query(
                "SELECT DISTINCT trace_id FROM shard_analytics.request_metrics"
                " WHERE run_id = {r:String}",
                parameters={"r": run_id},
            )
            .result_rows
        }
        for shard in (1, 2)
    ]
    assert traces[0] and traces[1] and not traces[0] & traces[1]
    # ...so a lookup by trace id asks that shard alone (this setting fails a query that cannot).
    trace_id = next(iter(traces[1]))
    spans = (
        reader_client(cluster.settings)
        .query(
            "SELECT count() FROM otel.otel_traces WHERE TraceId = {t:String}"
            " SETTINGS force_optimize_skip_unused_shards = 1",
            parameters={"t": trace_id},
        )
        .result_rows[0][0]
    )
    assert spans >= 1
    # The rollups behind the dashboards add up over the shards.
    rolled_up = (
        reader_client(cluster.settings)
        .query(
            "SELECT (SELECT count() FROM analytics.request_metrics),"
            " (SELECT sum(requests) FROM analytics.request_metrics_1m)"
        )
        .result_rows[0]
    )
    assert rolled_up[0] == rolled_up[1]


def test_a_resent_batch_lands_once(cluster: Cluster) -> None:
    """What the collector does when an insert's answer is lost: the same batch again, to any
    node. Each shard's copies drop a block they already hold, and the views do not run twice."""
    service = f"resend-{uuid.uuid4().hex[:8]}"
    start = datetime.now(UTC)
    rows = [
        [start + timedelta(microseconds=i), uuid.uuid4().hex, uuid.uuid4().hex[:16], service]
        for i in range(500)
    ]
    for shard, copy in ((1, 1), (2, 2), (1, 2)):
        cluster.admin(shard, copy).insert(
            "otel.otel_traces",
            rows,
            column_names=["Timestamp", "TraceId", "SpanId", "ServiceName"],
            settings={"async_insert": 0},
        )

    def per_copy() -> tuple[int, ...]:
        return tuple(
            int(
                cluster.admin(shard, copy)
                .query(
                    "SELECT count() FROM shard_otel.otel_traces WHERE ServiceName = {s:String}",
                    parameters={"s": service},
                )
                .result_rows[0][0]
            )
            for shard, copy in ((1, 1), (1, 2), (2, 1), (2, 2))
        )

    def settled() -> tuple[int, ...] | None:
        counts = per_copy()
        s1c1, s1c2, s2c1, s2c2 = counts
        return counts if s1c1 == s1c2 and s2c1 == s2c2 and s1c1 + s2c1 == 500 else None

    counts = _poll(settled, "each copy holds its shard's share of the 500 spans, once")
    time.sleep(2)  # and no late duplicates
    assert per_copy() == counts
    assert 0 < counts[0] < 500
    total = (
        reader_client(cluster.settings)
        .query(
            "SELECT count(), uniqExact(SpanId) FROM otel.otel_traces"
            " WHERE ServiceName = {s:String}",
            parameters={"s": service},
        )
        .result_rows[0]
    )
    assert total == (500, 500)


def test_a_copy_killed_mid_load_loses_nothing_and_catches_up(
    cluster: Cluster, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    load = cluster.load("--rps", "40", "--duration", "30s", "--json", str(report))
    time.sleep(12)  # k6 and the services' warm-up, then traffic
    cluster.kill(2, 1)
    # Reads ask each shard's first copy first (in_order); shard 2's is gone, its second answers.
    reader = reader_client(cluster.settings)
    for _ in range(3):
        reader.query(
            "SELECT count() FROM analytics.request_metrics SETTINGS load_balancing = 'in_order'"
        )
        time.sleep(1)
    time.sleep(5)
    restart = cluster.stack("up")
    assert restart.returncode == 0, restart.stdout + restart.stderr
    restarted = time.monotonic()
    facts = _finish(load, report)
    ended = time.monotonic()
    audit, run_id = facts["audit"], facts["run_id"]
    assert audit["missing"] == 0 and audit["duplicates"] == 0, audit

    def caught_up() -> bool:
        ours = _run_count(cluster.admin(2, 1), "shard_analytics.request_metrics", run_id)
        other = _run_count(cluster.admin(2, 2), "shard_analytics.request_metrics", run_id)
        return ours == other > 0

    _poll(caught_up, "the killed copy got what it missed", timeout=60)
    print(
        f"shard 2 copy 1 agreed with copy 2 {time.monotonic() - ended:.1f}s after the load and"
        f" its audit ended ({time.monotonic() - restarted:.1f}s after its restart)"
    )
    for shard in (1, 2):
        copies = [
            _run_count(cluster.admin(shard, copy), "shard_analytics.request_metrics", run_id)
            for copy in (1, 2)
        ]
        assert copies[0] == copies[1], (shard, copies)


def _send_spans(settings: Settings, service: str, count: int) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(
        endpoint=f"http://{settings.host}:{settings.ports.otlp_grpc}", insecure=True
    )
    provider.add_span_processor(
        BatchSpanProcessor(exporter, max_queue_size=max(count, 512), max_export_batch_size=512)
    )
    tracer = provider.get_tracer("clickpulse.tests")
    for index in range(count):
        with tracer.start_as_current_span(f"while shard 2 is down {index}", kind=SpanKind.SERVER):
            pass
    assert provider.force_flush(30_000), "the collector did not accept the spans"
    provider.shutdown()


def test_a_whole_shard_down_is_an_error_and_its_writes_wait(cluster: Cluster) -> None:
    """No copy of shard 2: a read through the cluster fails and says so, rather than answer
    for half the data; what is written meanwhile waits on the other nodes and lands later."""
    reader = reader_client(cluster.settings)

    def landed(service: str) -> int:
        return int(
            reader.query(
                "SELECT count() FROM otel.otel_traces WHERE ServiceName = {s:String}",
                parameters={"s": service},
            ).result_rows[0][0]
        )

    before = f"before-{uuid.uuid4().hex[:8]}"
    _send_spans(cluster.settings, before, 200)
    _poll(lambda: landed(before) == 200, "the spans sent before the outage landed")
    cluster.kill(2, 1)
    cluster.kill(2, 2)
    sql = cluster.stack("sql", "SELECT count() FROM analytics.request_metrics")
    assert sql.returncode != 0
    message = " ".join((sql.stdout + sql.stderr).split())
    assert "a shard of the ClickHouse cluster is down" in message, message
    assert "skip_unavailable_shards = 1" in message and "All connection tries failed" in message
    # A partial answer only when asked for by name (and then it is partial).
    partial = reader.query(
        "SELECT count() FROM otel.otel_traces WHERE ServiceName = {s:String}"
        " SETTINGS skip_unavailable_shards = 1",
        parameters={"s": before},
    ).result_rows[0][0]
    shares = [
        _count(cluster.admin(1, copy), "shard_otel.otel_traces", "ServiceName", before)
        for copy in (1, 2)
    ]
    assert 0 < partial < 200, (partial, shares)
    during = f"shard-down-{uuid.uuid4().hex[:8]}"
    _send_spans(cluster.settings, during, 1000)
    restart = cluster.stack("up")
    assert restart.returncode == 0, restart.stdout + restart.stderr
    _poll(lambda: landed(during) == 1000, "the spans written while shard 2 was down landed")

    def shard_2_copies(service: str) -> tuple[int, int] | None:
        shares = tuple(
            _count(cluster.admin(2, copy), "shard_otel.otel_traces", "ServiceName", service)
            for copy in (1, 2)
        )
        # Each copy's blocks come from their own queues: the reads saw one copy; wait for both.
        # That holds for the spans sent before the outage too: the reads that saw them land may
        # have seen only the copy that had them when both were killed (CI once read 99 of 200
        # right after the restart: the other copy was still behind on its queue).
        return (shares[0], shares[1]) if shares[0] == shares[1] > 0 else None

    share = _poll(
        lambda: shard_2_copies(during), "both copies of shard 2 got the spans written meanwhile"
    )[0]
    assert 0 < share < 1000
    _poll(lambda: shard_2_copies(before), "both copies of shard 2 hold the spans sent before")
    assert landed(before) == 200
