"""How many ClickHouse nodes the stack runs, where each answers, and the cluster they form.

One node (1 shard x 1 copy) is the default and is exactly the single server the stack always ran.
More nodes form a cluster named `clickpulse`: S shards of C copies each. Locally every node is a
chdb server process; chdb cannot replicate (no interserver HTTP, no Keeper: docs/scaling.md), so
each shard's copies are plain MergeTree tables the Distributed engine writes one by one
(`internal_replication=false`). Under compose the nodes are clickhouse-server containers that
replicate through clickhouse-keeper instead (`replication = "keeper"`).

Node 1 (shard 1, copy 1) answers on the stack's ClickHouse ports, so every reader (`nox -s sql`,
the report, the load audit, the tests) reaches the cluster through it unchanged. The other nodes
take two ports each from CLICKPULSE_CH_CLUSTER_BASE_PORT up: HTTP, then native.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import escape

CLUSTER = "clickpulse"
MAX_SHARDS = 8
MAX_COPIES = 4
DEFAULT_CLUSTER_BASE_PORT = 8130
# Which file in the state folder remembers the topology `up --shards N --copies M` chose, so that
# later commands (status, down, tests, load) act on the same nodes without repeating the flags.
TOPOLOGY_FILE = "clickhouse-topology.json"

Replication = Literal["copies", "keeper"]


@dataclass(frozen=True)
class Topology:
    shards: int = 1
    copies: int = 1
    # "copies": the Distributed engine writes every copy (chdb); "keeper": ReplicatedMergeTree.
    replication: Replication = "copies"

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= MAX_SHARDS:
            raise ValueError(f"shards must be 1..{MAX_SHARDS}, not {self.shards}")
        if not 1 <= self.copies <= MAX_COPIES:
            raise ValueError(f"copies must be 1..{MAX_COPIES}, not {self.copies}")

    @property
    def clustered(self) -> bool:
        return self.shards * self.copies > 1

    @property
    def label(self) -> str:
        return f"{self.shards}x{self.copies}"

    def describe(self) -> str:
        if not self.clustered:
            return "one ClickHouse node"
        return f"{self.shards} shard(s) x {self.copies} copies"


SINGLE_NODE = Topology()


@dataclass(frozen=True)
class Node:
    """One ClickHouse server of the topology."""

    shard: int
    copy: int
    host: str
    http_port: int
    native_port: int
    clustered: bool

    @property
    def name(self) -> str:
        """The component name: `clickhouse` alone, `clickhouse-s1c2` in a cluster."""
        return f"clickhouse-s{self.shard}c{self.copy}" if self.clustered else "clickhouse"

    @property
    def slug(self) -> str:
        return f"s{self.shard}c{self.copy}"


def _positive(name: str, raw: str, upper: int) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= upper:
        raise SystemExit(f"{name}={raw!r} is not a number 1..{upper}")
    return int(raw)


def topology_from_env(state_dir: Path) -> Topology:
    """CLICKPULSE_CH_SHARDS / CLICKPULSE_CH_COPIES when set, else what `up` last chose for this
    state folder, else one node."""
    stored = load(state_dir)
    shards_raw = os.environ.get("CLICKPULSE_CH_SHARDS")
    copies_raw = os.environ.get("CLICKPULSE_CH_COPIES")
    replication_raw = os.environ.get("CLICKPULSE_CH_REPLICATION", stored.replication)
    if replication_raw not in ("copies", "keeper"):
        raise SystemExit(f"CLICKPULSE_CH_REPLICATION={replication_raw!r} is not copies or keeper")
    replication: Replication = "keeper" if replication_raw == "keeper" else "copies"
    return Topology(
        shards=(
            _positive("CLICKPULSE_CH_SHARDS", shards_raw, MAX_SHARDS)
            if shards_raw is not None
            else stored.shards
        ),
        copies=(
            _positive("CLICKPULSE_CH_COPIES", copies_raw, MAX_COPIES)
            if copies_raw is not None
            else stored.copies
        ),
        replication=replication,
    )


def load(state_dir: Path) -> Topology:
    path = state_dir / TOPOLOGY_FILE
    try:
        data = json.loads(path.read_text())
        return Topology(shards=int(data["shards"]), copies=int(data["copies"]))
    except FileNotFoundError:
        return Topology()
    except (ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{path} is unreadable ({exc}); delete it, then run `up`") from None


def store(state_dir: Path, topology: Topology) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / TOPOLOGY_FILE).write_text(
        json.dumps({"shards": topology.shards, "copies": topology.copies}) + "\n"
    )


def cluster_base_port() -> int:
    raw = os.environ.get("CLICKPULSE_CH_CLUSTER_BASE_PORT", str(DEFAULT_CLUSTER_BASE_PORT))
    if not raw.isdigit() or not 0 < int(raw) < 65536 - 2 * MAX_SHARDS * MAX_COPIES:
        raise SystemExit(f"CLICKPULSE_CH_CLUSTER_BASE_PORT={raw!r} is not a port number")
    return int(raw)


def node_hosts() -> tuple[str, ...]:
    """CLICKPULSE_CH_NODE_HOSTS: one host per node, shard by shard (compose's cluster profile,
    where every node is a container answering on the same ports)."""
    raw = os.environ.get("CLICKPULSE_CH_NODE_HOSTS", "")
    return tuple(host.strip() for host in raw.split(",") if host.strip())


def nodes(
    topology: Topology,
    *,
    host: str,
    http_port: int,
    native_port: int,
    base_port: int,
    hosts: tuple[str, ...] = (),
) -> list[Node]:
    """Shard by shard, copy by copy. Node 1 on the stack's ports, the others from `base_port`;
    or, given a host per node, every node on the stack's ports of its own host."""
    count = topology.shards * topology.copies
    if topology.clustered and hosts and len(hosts) != count:
        raise SystemExit(
            f"CLICKPULSE_CH_NODE_HOSTS names {len(hosts)} nodes for {topology.describe()}"
            f" ({count} nodes)"
        )
    found = []
    for index in range(count):
        shard, copy = divmod(index, topology.copies)
        http, native = (
            (http_port, native_port)
            if index == 0 or (topology.clustered and hosts)
            else (base_port + 2 * (index - 1), base_port + 2 * (index - 1) + 1)
        )
        found.append(
            Node(
                shard=shard + 1,
                copy=copy + 1,
                host=hosts[index] if topology.clustered and hosts else host,
                http_port=http,
                native_port=native,
                clustered=topology.clustered,
            )
        )
    return found


def cluster_config(topology: Topology, all_nodes: list[Node], me: Node) -> str:
    """The config.d file of one node: the cluster, its own shard and copy, and the pool that
    sends what the Distributed tables queued."""
    shards = []
    for shard in range(1, topology.shards + 1):
        replicas = "".join(
            "<replica>"
            f"<host>{escape(n.host)}</host><port>{n.native_port}</port>"
            "<user>cluster</user>"
            '<password from_env="CLICKPULSE_CH_CLUSTER_PASSWORD"/>'
            "</replica>"
            for n in all_nodes
            if n.shard == shard
        )
        # false: no replication underneath, the Distributed engine writes every copy itself.
        internal = "true" if topology.replication == "keeper" else "false"
        shards.append(
            f"<shard><internal_replication>{internal}</internal_replication>{replicas}</shard>"
        )
    return f"""<clickhouse>
  <remote_servers><{CLUSTER}>{"".join(shards)}</{CLUSTER}></remote_servers>
  <macros><shard>{me.shard}</shard><replica>c{me.copy}</replica></macros>
  <!-- chdb's default is 0 threads: what a Distributed table queued for another node would
       never leave (measured: rows stayed queued until this was set). -->
  <background_distributed_schedule_pool_size>4</background_distributed_schedule_pool_size>
</clickhouse>
"""
