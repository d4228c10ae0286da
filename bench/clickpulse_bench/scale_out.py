"""Section 8: ingest through a local ClickHouse cluster beside one node, on the same box.

Each topology gets a pipeline of its own (its ClickHouse node(s) and a collector, in a throw-away
state folder, on free ports): the same pre-serialized OTLP batches are offered at the same rate,
and the audit counts them in `analytics.request_metrics` through the Distributed tables. The CPU
each component used is read from its processes, so the cost per span of every tier is measured,
not assumed (docs/scaling.md builds on it)."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from clickpulse.stack.components import Collector, Component, clickhouse_nodes
from clickpulse.stack.processes import free_port, free_port_run
from clickpulse.stack.settings import Ports, Settings
from clickpulse.stack.topology import Topology
from clickpulse_bench.common import console
from clickpulse_bench.ingest import bench_ingest
from clickpulse_bench.report import md_table

TOPOLOGIES = (Topology(1, 1), Topology(2, 1), Topology(2, 2))


@contextlib.contextmanager
def pipeline(base: Settings, topology: Topology) -> Iterator[tuple[Settings, list[Component]]]:
    """ClickHouse node(s) of `topology` and a collector, started and migrated, then removed."""
    state = Path(tempfile.mkdtemp(prefix=f"clickpulse-scale-{topology.label}-"))
    ports = Ports(
        clickhouse_http=free_port(),
        clickhouse_native=free_port(),
        postgres=free_port(),
        otlp_grpc=free_port(),
        otlp_http=free_port(),
        collector_health=free_port(),
        collector_metrics=free_port(),
        crud_api=free_port(),
        ecommerce_api=free_port(),
    )
    settings = dataclasses.replace(
        base,
        state_dir=state,
        ports=ports,
        topology=topology,
        ch_cluster_base_port=free_port_run(2 * topology.shards * topology.copies),
    )
    components: list[Component] = [*clickhouse_nodes(settings), Collector(settings)]
    try:
        for component in components:
            component.prepare()
            component.process.start()
            component.after_start()
        yield settings, components
    finally:
        for component in reversed(components):
            component.process.stop()
        shutil.rmtree(state, ignore_errors=True)


def _cpu_seconds(components: list[Component]) -> dict[str, float]:
    """CPU time (user + system) of each component's process tree so far."""
    used = {}
    for component in components:
        proc = component.process.running()
        total = 0.0
        if proc is not None:
            for p in [proc, *proc.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = p.cpu_times()
                    total += times.user + times.system
        used[component.name] = total
    return used


def bench_topology(base: Settings, topology: Topology, seconds: float, rate: int) -> dict[str, Any]:
    with (
        console.status(f"{topology.describe()}: starting"),
        pipeline(base, topology) as (
            settings,
            components,
        ),
    ):
        pass_through = _cpu_seconds(components)
        result = bench_ingest(settings, seconds, rate, clean=False)
        after = _cpu_seconds(components)
    spans = result["landed"] or 1
    clickhouse_cpu = sum(after[n] - pass_through[n] for n in after if n.startswith("clickhouse"))
    collector_cpu = after["collector"] - pass_through["collector"]
    return {
        "topology": topology.describe(),
        "nodes": topology.shards * topology.copies,
        "offered spans/s": result["offered spans/s"],
        "sustained spans/s": result["sustained spans/s (sent -> all landed)"],
        "lost": result["lost"],
        "lag p50 s": result["lag p50 s"],
        "lag p99 s": result["lag p99 s"],
        "ClickHouse CPU ms per 1k spans": round(clickhouse_cpu / spans * 1e6, 1),
        "collector CPU ms per 1k spans": round(collector_cpu / spans * 1e6, 1),
    }


def section(settings: Settings, quick: bool, note: str) -> str:
    seconds, rate = (10, 20_000) if quick else (20, 40_000)
    rows = []
    for topology in TOPOLOGIES:
        row = bench_topology(settings, topology, seconds, rate)
        console.print(row)
        rows.append(row)
    single = rows[0]["sustained spans/s"] or 1
    for row in rows:
        row["vs one node"] = round(row["sustained spans/s"] / single, 2)
    return (
        "## 8. Scale-out: ingest through a local ClickHouse cluster\n\n"
        f"The ingest of section 1 ({rate:,} spans/s offered for {seconds} s, all views on) into a\n"
        "pipeline of its own per topology: chdb node(s) and a collector that inserts into every\n"
        "node in turn, on the same 2 cores, the stack's services idle beside them. Copies are\n"
        "written by the Distributed engine (chdb cannot replicate), so 2 copies is twice the\n"
        "inserts and views. CPU is what the processes used during the run, per 1,000 spans\n"
        "landed.\n\n" + md_table(rows) + note
    )
