"""Did everything k6 sent land in `analytics.request_metrics`? Every request of a run carries
the run id (X-Clickpulse-Run-Id -> app.load.run_id -> run_id), so the count is exact."""

from __future__ import annotations

import time
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from clickpulse.stack.clickhouse_client import reader_client
from clickpulse.stack.settings import Settings


@dataclass(frozen=True)
class Audit:
    sent: int
    landed: int
    lag_p50_s: float | None = None
    lag_p99_s: float | None = None
    lag_max_s: float | None = None

    @property
    def missing(self) -> int:
        return max(0, self.sent - self.landed)

    @property
    def extra(self) -> int:
        return max(0, self.landed - self.sent)


def landed_count(client: Client, run_id: str) -> int:
    count: int = client.query(
        "SELECT count() FROM analytics.request_metrics WHERE run_id = {r:String}",
        parameters={"r": run_id},
    ).result_rows[0][0]
    return count


def visibility_lag(client: Client, run_id: str) -> tuple[float, float, float]:
    """p50, p99 and max seconds from the end of a request to its row being queryable."""
    row = client.query(
        "WITH toFloat64(ingested_at) - (toFloat64(timestamp) + response_time_ms / 1000) AS lag"
        " SELECT quantile(0.5)(lag), quantile(0.99)(lag), max(lag)"
        " FROM analytics.request_metrics WHERE run_id = {r:String}",
        parameters={"r": run_id},
    ).result_rows[0]
    return float(row[0]), float(row[1]), float(row[2])


def audit_run(
    run_id: str, sent: int, *, timeout_s: float = 60.0, settings: Settings | None = None
) -> Audit:
    """Polls until every sent request is visible, or the timeout (one client for all polls)."""
    client = reader_client(settings or Settings.from_env())
    started = time.monotonic()
    landed = landed_count(client, run_id)
    while landed < sent and time.monotonic() - started < timeout_s:
        time.sleep(0.25)
        landed = landed_count(client, run_id)
    if landed == 0:
        return Audit(sent=sent, landed=0)
    p50, p99, worst = visibility_lag(client, run_id)
    return Audit(sent=sent, landed=landed, lag_p50_s=p50, lag_p99_s=p99, lag_max_s=worst)
