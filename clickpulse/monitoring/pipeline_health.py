"""What `nox -s status` shows beyond liveness: the collector's sending queue (live, so it shows
while ClickHouse is away), how fresh the data is and how late it arrives, ClickHouse's parts,
merges and disk, PostgreSQL's sessions, and the alerts the monitor sees firing. Each line is
read on its own and says why when it cannot be."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from clickpulse.monitoring import heartbeat
from clickpulse.monitoring.clickhouse_query import ClickHouseQuery
from clickpulse.monitoring.collector_live import CollectorLive
from clickpulse.monitoring.notifications import STATE_FILE
from clickpulse.monitoring.rules import RULES
from clickpulse.stack.settings import Settings

Level = Literal["ok", "warn", "bad", "unknown"]

FRESHNESS_SQL = """
SELECT dateDiff('millisecond', max(ingested_at), now64(3)) / 1000 AS ingested_ago,
       max(timestamp) AS newest_request,
       count() AS requests
FROM analytics.request_metrics
WHERE timestamp >= now() - INTERVAL 1 DAY"""

LAG_SQL = """
SELECT count() AS requests,
       quantiles(0.5, 0.95)((toUnixTimestamp64Milli(ingested_at)
           - toUnixTimestamp64Milli(timestamp) - response_time_ms) / 1000) AS lag
FROM analytics.request_metrics
WHERE timestamp >= now() - INTERVAL 20 MINUTE AND ingested_at >= now() - INTERVAL 5 MINUTE"""

CLICKHOUSE_SQL = """
SELECT
    maxIf(value, source = 'parts' AND name = 'active_parts') AS parts,
    argMaxIf(object, value, source = 'parts' AND name = 'active_parts') AS parts_table,
    sumIf(value, source = 'merges' AND name = 'running') AS merges,
    sumIf(value, source = 'disks' AND name = 'free_bytes')
        / sumIf(value, source = 'disks' AND name = 'total_bytes') AS disk_free,
    dateDiff('second', max(ts), now()) AS sampled_ago,
    count() AS samples
FROM ops.clickhouse_samples
WHERE ts = (SELECT max(ts) FROM ops.clickhouse_samples WHERE ts >= now() - INTERVAL 10 MINUTE)"""

POSTGRES_SQL = """
SELECT
    sumIf(Value, MetricName = 'postgresql.backends') AS sessions,
    sumIf(Value, MetricName = 'postgresql.backends' AND Attributes['state'] = 'active') AS active,
    maxIf(Value, MetricName = 'postgresql.connection.max') AS max_connections,
    maxIf(Value, MetricName = 'postgresql.transaction.oldest.duration') AS oldest_s,
    maxIf(Value, MetricName = 'postgresql.up') AS up,
    dateDiff('second', max(TimeUnix), now()) AS sampled_ago,
    count() AS samples
FROM otel.otel_metrics_gauge
WHERE ServiceName = 'clickpulse-monitor' AND MetricName LIKE 'postgresql.%'
  AND TimeUnix = (SELECT max(TimeUnix) FROM otel.otel_metrics_gauge
                  WHERE ServiceName = 'clickpulse-monitor' AND MetricName = 'postgresql.up'
                    AND TimeUnix >= now() - INTERVAL 10 MINUTE)"""


@dataclass(frozen=True)
class Line:
    what: str
    value: str
    level: Level


def _row(query: ClickHouseQuery, sql: str) -> dict[str, Any]:
    columns, rows = query(sql)
    return dict(zip(columns, rows[0], strict=True)) if rows else {}


def queue_line(settings: Settings) -> Line:
    live = CollectorLive(settings.collector_metrics_url)
    queue = live.queue_items()
    total = sum(queue.values())
    text = " · ".join(f"{signal} {items:,.0f}" for signal, items in sorted(queue.items()))
    return Line(
        "collector sending queue (live)",
        f"{text} items",
        "ok" if total < 10_000 else "warn",
    )


def freshness_lines(query: ClickHouseQuery) -> list[Line]:
    fresh = _row(query, FRESHNESS_SQL)
    lines = []
    # Over no rows max() is 1970, not NULL: a fresh stack read "ingested 1,796,090,097 s ago".
    if not fresh.get("requests"):
        lines.append(Line("newest request row", "none in the last day", "unknown"))
    else:
        ago = float(fresh["ingested_ago"])
        lines.append(
            Line(
                "newest request row",
                f"ingested {ago:,.0f} s ago (request at {fresh['newest_request']:%H:%M:%S})",
                "ok",
            )
        )
    lag = _row(query, LAG_SQL)
    if not lag.get("requests"):
        lines.append(Line("visibility lag, last 5 min", "no requests arrived", "unknown"))
    else:
        p50, p95 = lag["lag"]
        lines.append(
            Line(
                "visibility lag, last 5 min",
                f"p50 {p50:.1f} s · p95 {p95:.1f} s ({lag['requests']:,} requests)",
                "ok" if p95 < 10 else "warn",
            )
        )
    return lines


def clickhouse_line(query: ClickHouseQuery) -> Line:
    row = _row(query, CLICKHOUSE_SQL)
    # An aggregate over no rows is one row of defaults (max(ts) = 1970): count the samples.
    if not row.get("samples"):
        return Line("ClickHouse", "no health sample in the last 10 minutes", "bad")
    parts = int(row["parts"])
    disk = float(row["disk_free"])
    return Line(
        "ClickHouse",
        f"at most {parts} active parts in a partition ({row['parts_table']}) · "
        f"{int(row['merges'])} merges running · disk {disk:.0%} free · "
        f"sampled {int(row['sampled_ago'])} s ago",
        "ok" if parts <= 300 and disk >= 0.1 else "warn",
    )


def postgres_line(query: ClickHouseQuery) -> Line:
    row = _row(query, POSTGRES_SQL)
    if not row.get("samples"):
        return Line("PostgreSQL", "no sample from the monitor in the last 10 minutes", "unknown")
    if row["up"] != 1:
        return Line(
            "PostgreSQL", f"unreachable at the last sample ({row['sampled_ago']} s ago)", "bad"
        )
    return Line(
        "PostgreSQL",
        f"{int(row['sessions'])} sessions of {int(row['max_connections'])}"
        f" ({int(row['active'])} active) · oldest transaction {row['oldest_s']:.0f} s ·"
        f" sampled {int(row['sampled_ago'])} s ago",
        "ok" if row["sessions"] < 0.8 * row["max_connections"] else "warn",
    )


def alerts_line(settings: Settings) -> Line:
    directory = settings.monitor_dir
    age = heartbeat.age(directory)
    if age is None or age > 60:
        return Line(
            "alerts",
            "the monitor is not evaluating (see its line above); `nox -s alerts` evaluates now",
            "unknown",
        )
    try:
        states = json.loads((directory / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return Line("alerts", "no states saved yet", "unknown")
    titles = {r.uid: r.title for r in RULES}
    firing, pending = [], []
    for uid, status in states.items():
        for instance in status["instances"].values():
            labels = ", ".join(f"{k}={v}" for k, v in instance["labels"])
            name = titles.get(uid, uid) + (f" ({labels})" if labels else "")
            if instance["state"] == "firing":
                firing.append(name)
            elif instance["state"] == "pending":
                pending.append(name)
    text = f"{len(firing)} firing, {len(pending)} pending (monitor, {age:.0f} s ago)"
    if firing:
        text += "\nfiring: " + "; ".join(sorted(firing))
    if pending:
        text += "\npending: " + "; ".join(sorted(pending))
    return Line("alerts", text, "bad" if firing else ("warn" if pending else "ok"))


def gather(settings: Settings) -> list[Line]:
    query = ClickHouseQuery(settings, timeout_s=3.0)
    lines: list[Line] = []
    steps: list[tuple[str, Callable[[], Line | list[Line]]]] = [
        ("collector sending queue (live)", lambda: queue_line(settings)),
        ("data freshness", lambda: freshness_lines(query)),
        ("ClickHouse", lambda: clickhouse_line(query)),
        ("PostgreSQL", lambda: postgres_line(query)),
        ("alerts", lambda: alerts_line(settings)),
    ]
    for what, step in steps:
        try:
            result = step()
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0][:100] if str(exc).strip() else repr(exc)
            lines.append(Line(what, f"cannot tell: {reason}", "unknown"))
            continue
        lines.extend(result if isinstance(result, list) else [result])
    return lines
