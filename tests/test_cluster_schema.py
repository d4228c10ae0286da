"""The one schema source rendered for a cluster (clickpulse/stack/cluster_schema.py) and the
topology settings, without a cluster: statement by statement, on every migration there is."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from clickpulse.stack import migrations, topology
from clickpulse.stack.cluster_schema import (
    SINGLE,
    ShardTable,
    _column_changes,
    cluster_schema,
    created_databases,
    localize,
    render,
)
from clickpulse.stack.processes import StackError


def _all_statements() -> list[str]:
    return [s for m in migrations.discover() for s in m.statements()]


# As the stack renders them: every database the migrations create is sharded.
DATABASES = created_databases(_all_statements())
COPIES = cluster_schema(DATABASES)
KEEPER = cluster_schema(DATABASES, replication="keeper")


@pytest.mark.no_stack
def test_one_node_runs_every_statement_as_written() -> None:
    for statement in _all_statements():
        assert render(statement, SINGLE) == [statement]


@pytest.mark.no_stack
def test_the_databases_to_shard_are_the_ones_the_migrations_create() -> None:
    assert created_databases(_all_statements()) == {"otel", "analytics", "ops"}


@pytest.mark.no_stack
def test_a_table_is_created_locally_then_sharded_under_its_own_name() -> None:
    statement = (
        "CREATE TABLE IF NOT EXISTS otel.otel_traces (\n  TraceId String,\n"
        "  Attrs Map(String, String)\n) ENGINE = MergeTree() ORDER BY TraceId"
    )
    local, shard = render(statement, COPIES)
    assert local == statement.replace("otel.otel_traces", "shard_otel.otel_traces")
    assert shard == ShardTable("otel", "otel_traces")
    assert render("CREATE DATABASE IF NOT EXISTS otel", COPIES) == [
        "CREATE DATABASE IF NOT EXISTS otel",
        "CREATE DATABASE IF NOT EXISTS shard_otel",
    ]


@pytest.mark.no_stack
def test_views_read_and_write_local_tables_and_strings_are_left_alone() -> None:
    statement = (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS analytics.request_metrics_mv\n"
        "TO analytics.request_metrics\nAS SELECT SpanAttributes['otel.x'] AS a -- otel.y\n"
        "FROM otel.otel_traces WHERE ResourceAttributes['service.namespace'] = 'it''s otel.z'"
    )
    (local,) = render(statement, COPIES)
    assert "shard_analytics.request_metrics_mv" in local
    assert "TO shard_analytics.request_metrics" in local
    assert "FROM shard_otel.otel_traces" in local
    assert "['otel.x']" in local and "-- otel.y" in local and "'it''s otel.z'" in local
    with pytest.raises(StackError, match="must write TO a table"):
        render("CREATE MATERIALIZED VIEW otel.v ENGINE = MergeTree AS SELECT 1 AS x", COPIES)
    with pytest.raises(StackError, match="must write TO a table"):
        render("CREATE MATERIALIZED VIEW otel.v AS SELECT 1 FROM t TO otel.x", COPIES)
    # A refreshable view, as the self-monitoring samples are taken: each node its own.
    (refresh,) = render(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS otel.samples_refresh\n"
        "REFRESH EVERY 15 SECOND APPEND TO otel.samples\nAS SELECT now() AS ts FROM system.metrics",
        COPIES,
    )
    assert "APPEND TO shard_otel.samples" in refresh and "FROM system.metrics" in refresh


@pytest.mark.no_stack
def test_alters_backfills_and_drops_act_on_the_local_tables() -> None:
    assert render("ALTER TABLE analytics.request_metrics ADD INDEX i x TYPE minmax", COPIES) == [
        "ALTER TABLE shard_analytics.request_metrics ADD INDEX i x TYPE minmax"
    ]
    assert render(
        "INSERT INTO analytics.request_metrics_1h SELECT * FROM analytics.request_metrics_1m",
        COPIES,
    ) == [
        "INSERT INTO shard_analytics.request_metrics_1h SELECT * FROM shard_analytics."
        "request_metrics_1m"
    ]
    assert render("DROP TABLE IF EXISTS analytics.request_metrics_1m", COPIES) == [
        "DROP TABLE IF EXISTS analytics.request_metrics_1m",
        "DROP TABLE IF EXISTS shard_analytics.request_metrics_1m SYNC",
    ]
    assert render("DROP VIEW IF EXISTS analytics.request_metrics_1m_mv", COPIES)[-1] == (
        "DROP VIEW IF EXISTS shard_analytics.request_metrics_1m_mv SYNC"
    )
    function = "CREATE FUNCTION IF NOT EXISTS f AS (x) -> x + 1"
    assert render(function, COPIES) == [function]
    with pytest.raises(StackError, match="cannot apply"):
        render("RENAME TABLE otel.a TO otel.b", COPIES)


@pytest.mark.no_stack
def test_with_keeper_the_engines_replicate_on_a_path_per_shard_and_table() -> None:
    (local, _) = render(
        "CREATE TABLE otel.t (v UInt8) ENGINE = ReplacingMergeTree(v) ORDER BY v", KEEPER
    )
    assert local == (
        "CREATE TABLE shard_otel.t (v UInt8) ENGINE = ReplicatedReplacingMergeTree("
        "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}', v) ORDER BY v"
    )
    (local, _) = render("CREATE TABLE otel.t AS otel.s ENGINE = AggregatingMergeTree", KEEPER)
    assert "ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/" in local


@pytest.mark.no_stack
@pytest.mark.parametrize("schema", [COPIES, KEEPER], ids=["copies", "keeper"])
def test_every_migration_renders_and_every_table_is_sharded(schema: object) -> None:
    for statement in _all_statements():
        steps = render(statement, schema)  # type: ignore[arg-type]
        if statement.lstrip().upper().startswith("CREATE TABLE"):
            assert isinstance(steps[-1], ShardTable), statement
        for step in steps:
            # Nothing left that names a reader's table (outside strings), but for what must.
            if isinstance(step, str) and not step.lstrip().upper().startswith(
                ("CREATE DATABASE", "CREATE FUNCTION", "DROP ")
            ):
                assert localize(step, COPIES.databases) == step, step


@pytest.mark.no_stack
def test_the_distributed_table_follows_the_local_columns() -> None:
    local = [
        ("a", "UInt8", "", "", "first"),
        ("b", "String", "DEFAULT", "'x'", ""),
        ("c", "UInt64", "", "", "new"),
    ]
    distributed = [
        ("a", "UInt8", "", "", ""),
        ("b", "UInt8", "", "", ""),
        ("z", "Int8", "", "", ""),
    ]
    assert _column_changes(local, distributed) == [
        "DROP COLUMN `z`",
        "COMMENT COLUMN `a` 'first'",
        "MODIFY COLUMN `b` String DEFAULT 'x'",
        "ADD COLUMN `c` UInt64 COMMENT 'new' AFTER `b`",
    ]


@pytest.mark.no_stack
def test_nodes_take_the_stack_ports_then_two_each_from_the_base(tmp_path: Path) -> None:
    found = topology.nodes(
        topology.Topology(shards=2, copies=2),
        host="127.0.0.1",
        http_port=8123,
        native_port=9000,
        base_port=8130,
    )
    assert [(n.name, n.http_port, n.native_port) for n in found] == [
        ("clickhouse-s1c1", 8123, 9000),
        ("clickhouse-s1c2", 8130, 8131),
        ("clickhouse-s2c1", 8132, 8133),
        ("clickhouse-s2c2", 8134, 8135),
    ]
    (single,) = topology.nodes(
        topology.SINGLE_NODE, host="h", http_port=1, native_port=2, base_port=3
    )
    assert single.name == "clickhouse"
    config = ET.fromstring(topology.cluster_config(topology.Topology(2, 2), found, found[3]))
    shards = config.findall("./remote_servers/clickpulse/shard")
    assert [s.findtext("internal_replication") for s in shards] == ["false", "false"]
    assert [[r.findtext("port") for r in s.findall("replica")] for s in shards] == [
        ["9000", "8131"],
        ["8133", "8135"],
    ]
    assert config.findtext("./macros/shard") == "2" and config.findtext("./macros/replica") == "c2"
    assert int(config.findtext("background_distributed_schedule_pool_size") or 0) > 0


@pytest.mark.no_stack
def test_a_bad_topology_setting_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKPULSE_CH_SHARDS", "0")
    with pytest.raises(SystemExit, match=r"CLICKPULSE_CH_SHARDS='0' is not a number 1\.\.8"):
        topology.topology_from_env(tmp_path)
    monkeypatch.setenv("CLICKPULSE_CH_SHARDS", "2")
    assert topology.topology_from_env(tmp_path) == topology.Topology(shards=2, copies=1)
    topology.store(tmp_path, topology.Topology(shards=3, copies=2))
    monkeypatch.delenv("CLICKPULSE_CH_SHARDS")
    assert topology.topology_from_env(tmp_path) == topology.Topology(shards=3, copies=2)


def test_clickhouse_parses_every_statement_rendered_for_keeper(admin: Client) -> None:
    """compose's replicated cluster cannot run here; its DDL is at least ClickHouse 26.9's."""
    for statement in _all_statements():
        for step in render(statement, KEEPER):
            if isinstance(step, str):
                admin.query("SELECT formatQuery({q:String})", parameters={"q": step})
