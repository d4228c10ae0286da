"""PostgreSQL's health from its own statistics views, as OpenTelemetry metrics.

The collector cannot do this here: the Go module proxy refuses the contrib postgresql and
sqlquery receivers (403), so the monitor samples the views itself and sends gauges over OTLP
to the collector, which lands them in otel.otel_metrics_gauge like every other metric (and
queues them on disk while ClickHouse is away). It connects as `clickpulse_monitor`, a member of
PostgreSQL's `pg_monitor` role: it sees every session's state and transaction start, and can
write nothing. One sample is two queries, ~1 ms of PostgreSQL's time.

Metrics (resource service.name = clickpulse-monitor):
- postgresql.up: 1 when the sample succeeded, 0 when PostgreSQL could not be reached;
- postgresql.backends {state}: client sessions by state (active, idle, idle in transaction...);
- postgresql.connection.max: max_connections;
- postgresql.transaction.oldest.duration (s): the oldest open transaction, 0 if none;
- postgresql.locks.waiting: sessions waiting for a lock; postgresql.locks.held: locks granted;
- postgresql.deadlocks: deadlocks detected in the database since its statistics were reset.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

SESSIONS_SQL = """
SELECT coalesce(state, 'unknown') AS state, count(*) AS sessions
FROM pg_stat_activity
WHERE backend_type = 'client backend'
GROUP BY 1
"""

# The monitor's own query runs in a transaction too: not counted as the oldest one.
SUMMARY_SQL = """
SELECT
    current_setting('max_connections')::int AS max_connections,
    coalesce((SELECT extract(epoch FROM max(clock_timestamp() - xact_start))
              FROM pg_stat_activity
              WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()), 0)::float8
        AS oldest_transaction_s,
    (SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock') AS lock_waits,
    (SELECT count(*) FROM pg_locks WHERE granted) AS locks_held,
    (SELECT coalesce(sum(deadlocks), 0) FROM pg_stat_database) AS deadlocks
"""


@dataclass(frozen=True)
class PostgresSample:
    up: bool
    sessions: dict[str, int] = field(default_factory=dict)
    max_connections: int = 0
    oldest_transaction_s: float = 0.0
    lock_waits: int = 0
    locks_held: int = 0
    deadlocks: int = 0
    error: str | None = None


async def sample(connection: Any) -> PostgresSample:
    """One sample over an asyncpg connection."""
    sessions = {str(r["state"]): int(r["sessions"]) for r in await connection.fetch(SESSIONS_SQL)}
    row = await connection.fetchrow(SUMMARY_SQL)
    return PostgresSample(
        up=True,
        sessions=sessions,
        max_connections=int(row["max_connections"]),
        oldest_transaction_s=float(row["oldest_transaction_s"]),
        lock_waits=int(row["lock_waits"]),
        locks_held=int(row["locks_held"]),
        deadlocks=int(row["deadlocks"]),
    )


class PostgresSampler:
    """Keeps one connection; a failed sample drops it and reports PostgreSQL down."""

    def __init__(self, dsn: str, *, timeout_s: float = 3.0) -> None:
        self.dsn = dsn
        self.timeout_s = timeout_s
        self._connection: Any = None
        self.latest = PostgresSample(up=False, error="not sampled yet")

    async def sample(self) -> PostgresSample:
        import asyncio

        import asyncpg

        try:
            if self._connection is None or self._connection.is_closed():
                self._connection = await asyncpg.connect(
                    self.dsn, timeout=self.timeout_s, command_timeout=self.timeout_s
                )
            self.latest = await asyncio.wait_for(sample(self._connection), self.timeout_s)
        except Exception as exc:
            await self.close()
            self.latest = PostgresSample(up=False, error=f"{type(exc).__name__}: {exc}"[:300])
        return self.latest

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.terminate()
