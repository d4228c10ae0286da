"""Applies clickhouse/migrations/NNNN_name.sql in order, as the admin user.

Each file holds idempotent statements (IF NOT EXISTS), so a run interrupted half-way is simply
run again. Applied files are recorded with their checksum in `clickpulse_meta.schema_migrations`;
editing an applied file is refused: schema changes go in a new file.

On a cluster each node gets every migration, rendered by cluster_schema (local tables, their
Distributed twins under today's names); each node records what it applied.

Written by hand because the maintained Python migrators for ClickHouse either need the native
driver with one statement per file or a cluster setup; this is ~60 lines over clickhouse-connect.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

from clickpulse.stack import cluster_schema
from clickpulse.stack.cluster_schema import SINGLE, Schema, ShardTable
from clickpulse.stack.processes import StackError
from clickpulse.stack.settings import REPO_ROOT, Settings

MIGRATIONS_DIR = REPO_ROOT / "clickhouse" / "migrations"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def statements(self) -> list[str]:
        """Statements end with `;` at the end of a line; `--` comment lines are dropped."""
        lines = [
            line
            for line in self.path.read_text().splitlines()
            if not line.lstrip().startswith("--")
        ]
        chunks = re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE)
        return [chunk.strip() for chunk in chunks if chunk.strip()]


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise StackError(f"migration file name {path.name!r} is not NNNN_lower_snake.sql")
        migrations.append(Migration(version=path.stem, path=path))
    numbers = [m.version[:4] for m in migrations]
    if len(numbers) != len(set(numbers)):
        raise StackError(f"two migrations share a number in {directory}")
    return migrations


def schema_for(settings: Settings, directory: Path = MIGRATIONS_DIR) -> Schema:
    """As written for one node; rendered for the cluster of the settings' topology."""
    if not settings.topology.clustered:
        return SINGLE
    statements = [s for m in discover(directory) for s in m.statements()]
    return cluster_schema.cluster_schema(
        cluster_schema.created_databases(statements), settings.topology.replication
    )


def apply(client: Client, directory: Path = MIGRATIONS_DIR, schema: Schema = SINGLE) -> list[str]:
    """Applies what is pending on the node `client` talks to; returns the versions applied."""
    client.command("CREATE DATABASE IF NOT EXISTS clickpulse_meta")
    client.command(
        "CREATE TABLE IF NOT EXISTS clickpulse_meta.schema_migrations ("
        " version String, checksum String, applied_at DateTime DEFAULT now()"
        ") ENGINE = MergeTree ORDER BY version"
    )
    rows = client.query("SELECT version, checksum FROM clickpulse_meta.schema_migrations")
    applied: dict[str, str] = {str(v): str(c) for v, c in rows.result_rows}
    done = []
    for migration in discover(directory):
        known = applied.get(migration.version)
        if known is not None:
            if known != migration.checksum:
                raise StackError(
                    f"migration {migration.version} changed after it was applied; "
                    "put schema changes in a new migration file"
                )
            continue
        for statement in migration.statements():
            for step in cluster_schema.render(statement, schema):
                try:
                    if isinstance(step, ShardTable):
                        cluster_schema.shard_table(client, step, schema)
                    else:
                        client.command(step)
                except StackError:
                    raise
                except Exception as exc:
                    raise StackError(
                        f"migration {migration.version} failed: {exc}\nstatement:\n{step}"
                    ) from exc
        if schema.clustered:
            cluster_schema.sync_distributed(client, schema)
        client.insert(
            "clickpulse_meta.schema_migrations",
            [[migration.version, migration.checksum]],
            column_names=["version", "checksum"],
        )
        done.append(migration.version)
    return done
