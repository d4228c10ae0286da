"""One schema source for one node and for a cluster: the migrations in clickhouse/migrations/ as
written are the single node's schema; for a cluster each statement is rendered here.

On a cluster, every database a migration creates (`otel`, `analytics`, ...) gets a twin named
with the `shard_` prefix on every node:

- tables are created in the twin (`shard_otel.otel_traces`: this node's copy of its shard), and
  under the name readers use today (`otel.otel_traces`) a Distributed table over the cluster;
- materialized views are created between the local tables (`shard_otel.otel_traces` ->
  `shard_analytics.request_metrics`), so each node projects the rows it stores;
- ALTERs, INSERT ... SELECT backfills, OPTIMIZE and DROP act on the local tables; after each
  migration the Distributed tables take the local tables' columns and comments;
- functions and plain views are created as written (a view reads the Distributed tables).

So a new migration is written for one node and needs nothing else, as long as it follows what the
old ones do (docs/scaling.md, "Writing a migration"): materialized views with `TO`, no RENAME or
EXCHANGE, no DEFAULT now() in a table the collector writes (a resent batch would differ and
escape deduplication), and a sharding key below if the default one does not suit.

With `replication = "keeper"` (compose's clickhouse-server nodes), MergeTree engines become their
Replicated* twins on a Keeper path per shard and table; with "copies" (chdb, which cannot
replicate) the Distributed engine writes every copy and each local table deduplicates a block it
already holds, so a resend (the collector retrying, a queued block sent again) lands once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from clickpulse.stack.processes import StackError
from clickpulse.stack.topology import CLUSTER, Replication

# The cluster's user may read and append to `shard_*` databases
# (clickhouse/topology/cluster/users.xml).
LOCAL_PREFIX = "shard_"

# Spans of one trace on one shard: a lookup by TraceId reads one shard
# (optimize_skip_unused_shards, set for the analyst). Tables not named here are sharded by a hash
# of their sorting key: deterministic, so a resent batch splits exactly as it did the first time.
SHARDING_KEYS = {
    ("otel", "otel_traces"): "cityHash64(TraceId)",
    ("otel", "otel_traces_trace_id_ts"): "cityHash64(TraceId)",
    ("analytics", "request_metrics"): "cityHash64(trace_id)",
}

# Blocks each local table remembers (non-replicated MergeTree) to drop a repeated insert: at the
# collector's 10,000-20,000 spans per insert, minutes of inserts at 30,000 spans/s.
DEDUPLICATION_WINDOW = 10_000

# Queued blocks leave every 100 ms; after a failure the wait doubles up to 5 s (default 30 s), so
# a node back from a crash gets its rows within seconds. One block per send (no batching): a
# resent block must be the same block, or the shard could not recognise it.
DISTRIBUTED_SETTINGS = (
    "background_insert_batch = 0, background_insert_sleep_time_ms = 100, "
    "background_insert_max_sleep_time_ms = 5000"
)

_IDENT = r"[`\"]?\w+[`\"]?"
_NAME = rf"(?P<database>{_IDENT})\s*\.\s*(?P<table>{_IDENT})"
_CREATE_DATABASE = re.compile(
    rf"^\s*CREATE\s+DATABASE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<database>{_IDENT})", re.I
)
_CREATE_TABLE = re.compile(
    rf"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{_NAME}", re.I
)
_CREATE_MV = re.compile(
    rf"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?MATERIALIZED\s+VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?{_NAME}",
    re.I,
)
# `TO db.table` before the view's query (a refreshable view says `REFRESH ... [APPEND] TO`).
_MV_TO = re.compile(rf"\bTO\s+{_IDENT}\s*\.\s*{_IDENT}", re.I)
_MV_QUERY = re.compile(r"\bAS\s*(\(|SELECT\b|WITH\b)", re.I)
_AS_IS = re.compile(
    r"^\s*(CREATE\s+(OR\s+REPLACE\s+)?VIEW|CREATE\s+(OR\s+REPLACE\s+)?FUNCTION|DROP\s+FUNCTION)\b",
    re.I,
)
_DROP = re.compile(
    rf"^\s*DROP\s+(?P<kind>TABLE|VIEW|DICTIONARY)\s+(?:IF\s+EXISTS\s+)?{_NAME}(?P<rest>.*)$",
    re.I | re.S,
)
_UNSUPPORTED = re.compile(r"^\s*(RENAME|EXCHANGE)\b", re.I)
# Strings and comments are copied as they are; database names outside them are rewritten.
_SKIP = r"'(?:[^'\\]|\\.|'')*'|--[^\n]*|/\*.*?\*/"
_ENGINE = re.compile(
    rf"(?P<skip>{_SKIP})|\bENGINE\s*=\s*(?P<family>\w*)MergeTree\b\s*(?:\((?P<args>[^()]*)\))?",
    re.S,
)


def _unquote(identifier: str) -> str:
    return identifier.strip('`"')


@dataclass(frozen=True)
class Schema:
    """How the migrations are applied: as written (one node) or rendered for a cluster."""

    databases: frozenset[str] = frozenset()
    cluster: str | None = None
    replication: Replication = "copies"

    @property
    def clustered(self) -> bool:
        return self.cluster is not None


SINGLE = Schema()


def cluster_schema(databases: Iterable[str], replication: Replication = "copies") -> Schema:
    return Schema(databases=frozenset(databases), cluster=CLUSTER, replication=replication)


@dataclass(frozen=True)
class ShardTable:
    """Once the local table exists: its deduplication window and its Distributed table."""

    database: str
    table: str


Step = str | ShardTable


def created_databases(statements: Iterable[str]) -> set[str]:
    """The databases the migrations create: the ones whose tables a cluster shards."""
    found = set()
    for statement in statements:
        match = _CREATE_DATABASE.match(statement)
        if match:
            found.add(_unquote(match["database"]))
    return found


def localize(sql: str, databases: frozenset[str]) -> str:
    """`otel.x` -> `shard_otel.x` for every schema database, outside strings and comments."""
    if not databases:
        return sql
    names = "|".join(re.escape(d) for d in sorted(databases, key=len, reverse=True))
    pattern = re.compile(
        rf"(?P<skip>{_SKIP})|(?<![\w.`\"])(?P<q>[`\"]?)(?P<db>{names})(?P=q)(?=\s*\.)", re.S
    )

    def replace(match: re.Match[str]) -> str:
        if match["skip"] is not None:
            return match["skip"]
        quote = match["q"]
        return f"{quote}{LOCAL_PREFIX}{match['db']}{quote}"

    return pattern.sub(replace, sql)


def replicated_engines(sql: str) -> str:
    """MergeTree engines as Replicated* on a Keeper path per shard, database and table (the
    nodes create their tables one by one, so the path cannot contain a table's UUID)."""

    def replace(match: re.Match[str]) -> str:
        if match["skip"] is not None:
            return match["skip"]
        args = ["'/clickhouse/tables/{shard}/{database}/{table}'", "'{replica}'"]
        if match["args"] and match["args"].strip():
            args.append(match["args"].strip())
        return f"ENGINE = Replicated{match['family']}MergeTree({', '.join(args)})"

    return _ENGINE.sub(replace, sql)


def render(statement: str, schema: Schema) -> list[Step]:
    """What to run on each node for one statement of a migration."""
    if not schema.clustered:
        return [statement]
    if _UNSUPPORTED.match(statement):
        raise StackError(
            "a cluster cannot apply this statement (the local and Distributed tables would part "
            f"ways); write it as CREATE, INSERT ... SELECT and DROP:\n{statement}"
        )
    if _AS_IS.match(statement):
        return [statement]
    local = localize(statement, schema.databases)
    if schema.replication == "keeper":
        local = replicated_engines(local)
    if match := _CREATE_DATABASE.match(statement):
        name = _unquote(match["database"])
        if name not in schema.databases:
            return [statement]
        return [statement, f"CREATE DATABASE IF NOT EXISTS {LOCAL_PREFIX}{name}"]
    if match := _CREATE_MV.match(statement):
        query = _MV_QUERY.search(statement)
        if not _MV_TO.search(statement[: query.start() if query else len(statement)]):
            raise StackError(
                "on a cluster a materialized view must write TO a table (readers query that "
                f"table's Distributed twin):\n{statement}"
            )
        return [local]
    if match := _CREATE_TABLE.match(statement):
        database, table = _unquote(match["database"]), _unquote(match["table"])
        if database not in schema.databases:
            return [local]
        return [local, ShardTable(database, table)]
    if match := _DROP.match(statement):
        database, table = _unquote(match["database"]), _unquote(match["table"])
        # Replicated tables free their Keeper path at once, so the same table can come back.
        sync = " SYNC" if "SYNC" not in match["rest"].upper() else ""
        if database not in schema.databases:
            return [statement]
        kind = match["kind"].upper()
        # The reader's name first: a Distributed table (its queue of unsent blocks goes with
        # it) or a plain view; a materialized view exists only under the local name.
        return [
            f"DROP {kind} IF EXISTS {database}.{table}",
            f"DROP {kind} IF EXISTS {LOCAL_PREFIX}{database}.{table}{sync}",
        ]
    return [local]


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def shard_table(client: Client, step: ShardTable, schema: Schema) -> None:
    """Deduplication on the local table (copies) and the Distributed table readers query."""
    local = f"{LOCAL_PREFIX}{step.database}"
    row = client.query(
        "SELECT engine, sorting_key FROM system.tables WHERE database = {d:String}"
        " AND name = {t:String}",
        parameters={"d": local, "t": step.table},
    ).result_rows
    if not row:
        raise StackError(f"{local}.{step.table} was not created")
    engine, sorting_key = str(row[0][0]), str(row[0][1])
    if schema.replication == "copies" and engine.endswith("MergeTree"):
        client.command(
            f"ALTER TABLE {local}.`{step.table}` MODIFY SETTING "
            f"non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}"
        )
    key = SHARDING_KEYS.get(
        (step.database, step.table), f"cityHash64({sorting_key})" if sorting_key else "rand()"
    )
    client.command(
        f"CREATE TABLE IF NOT EXISTS {step.database}.`{step.table}` AS {local}.`{step.table}`"
        f" ENGINE = Distributed({schema.cluster}, {local}, `{step.table}`, {key})"
        f" SETTINGS {DISTRIBUTED_SETTINGS}"
    )


def _columns(client: Client, database: str, table: str) -> list[tuple[str, str, str, str, str]]:
    rows = client.query(
        "SELECT name, type, default_kind, default_expression, comment FROM system.columns"
        " WHERE database = {d:String} AND table = {t:String} ORDER BY position",
        parameters={"d": database, "t": table},
    ).result_rows
    return [(str(a), str(b), str(c), str(d), str(e)) for a, b, c, d, e in rows]


def sync_distributed(client: Client, schema: Schema) -> list[str]:
    """Gives each Distributed table its local table's columns, defaults and comments (what the
    migration's ALTERs changed there); returns the statements run."""
    ran: list[str] = []
    for database in sorted(schema.databases):
        local = f"{LOCAL_PREFIX}{database}"
        tables = client.query(
            "SELECT l.name, l.comment, d.comment FROM system.tables AS l"
            " INNER JOIN system.tables AS d ON d.name = l.name AND d.database = {d:String}"
            " WHERE l.database = {l:String} AND d.engine = 'Distributed'",
            parameters={"d": database, "l": local},
        ).result_rows
        for name, local_comment, comment in tables:
            statements = _column_changes(
                _columns(client, local, name), _columns(client, database, name)
            )
            if local_comment != comment:
                statements.append(f"MODIFY COMMENT {_quote(str(local_comment))}")
            for change in statements:
                sql = f"ALTER TABLE {database}.`{name}` {change}"
                client.command(sql)
                ran.append(sql)
    return ran


def _column_changes(
    local: list[tuple[str, str, str, str, str]], distributed: list[tuple[str, str, str, str, str]]
) -> list[str]:
    wanted = {c[0]: c for c in local}
    have = {c[0]: c for c in distributed}
    changes = [f"DROP COLUMN `{name}`" for name in have if name not in wanted]
    previous: str | None = None
    for name, type_, kind, expression, comment in local:
        definition = f"`{name}` {type_}" + (f" {kind} {expression}" if kind else "")
        if name not in have:
            where = f" AFTER `{previous}`" if previous else " FIRST"
            changes.append(f"ADD COLUMN {definition} COMMENT {_quote(comment)}{where}")
        else:
            _, old_type, old_kind, old_expression, old_comment = have[name]
            if (old_type, old_kind, old_expression) != (type_, kind, expression):
                changes.append(f"MODIFY COLUMN {definition}")
            if old_comment != comment:
                changes.append(f"COMMENT COLUMN `{name}` {_quote(comment)}")
        previous = name
    return changes
