"""Did everything k6 sent land in `analytics.request_metrics`? Every request of a run carries
the run id (X-Clickpulse-Run-Id -> app.load.run_id -> run_id), so the counts are exact.

Two things make rows differ from what k6 counted as sent, and neither is a loss:
- a true duplicate: the same span (trace_id, span_id) landing twice;
- a request k6 gave up on (timeout, connection error: "abandoned") that the server still
  answered: its span lands although k6 did not count it as sent.
So: distinct spans landed = sent - missing + abandoned that landed (+ unexplained extra), and
only `missing` is a loss. Which abandoned requests landed is known by count, not one by one: if
some answered requests were lost while as many abandoned ones landed, the loss is hidden.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from clickpulse.stack.clickhouse_client import reader_client
from clickpulse.stack.settings import Settings

# Once every answered request has landed, how long the count must stay still before we stop
# waiting for the spans of abandoned requests (the pipeline delivers in ~2 s batches).
ABANDONED_SETTLE_S = 5.0


@dataclass(frozen=True)
class Audit:
    sent: int  # requests k6 got an answer to
    landed: int  # rows of the run, duplicates included
    lag_p50_s: float | None = None
    lag_p99_s: float | None = None
    lag_max_s: float | None = None
    distinct: int | None = None  # distinct spans among them; None: same as landed
    abandoned: int = 0  # requests k6 gave up on (no answer)
    # time.monotonic() when `sent` rows were first visible (None: never): what came after
    # (duplicate and lag queries, waiting for abandoned spans) is not the pipeline's time.
    landed_at: float | None = None

    @property
    def landed_distinct(self) -> int:
        return self.landed if self.distinct is None else self.distinct

    @property
    def duplicates(self) -> int:
        """Rows beyond the first of the same span."""
        return self.landed - self.landed_distinct

    @property
    def missing(self) -> int:
        return max(0, self.sent - self.landed_distinct)

    @property
    def abandoned_landed(self) -> int:
        """Requests k6 gave up on that the server answered all the same."""
        return min(self.abandoned, max(0, self.landed_distinct - self.sent))

    @property
    def extra(self) -> int:
        """Distinct spans nobody accounts for: neither sent nor abandoned (a k6 iteration cut
        off at the end of the run, or another client using this run id)."""
        return max(0, self.landed_distinct - self.sent - self.abandoned)


def landed_count(client: Client, run_id: str) -> int:
    count: int = client.query(
        "SELECT count() FROM analytics.request_metrics WHERE run_id = {r:String}",
        parameters={"r": run_id},
    ).result_rows[0][0]
    return count


def counts(client: Client, run_id: str) -> tuple[int, int]:
    """Rows and distinct spans of the run, read together so that they agree."""
    row = client.query(
        "SELECT count(), uniqExact(trace_id, span_id) FROM analytics.request_metrics"
        " WHERE run_id = {r:String}",
        parameters={"r": run_id},
    ).result_rows[0]
    return int(row[0]), int(row[1])


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
    run_id: str,
    sent: int,
    *,
    abandoned: int = 0,
    timeout_s: float = 60.0,
    settings: Settings | None = None,
) -> Audit:
    """Polls until every sent request is visible (and the spans of abandoned requests stop
    arriving), or the timeout; one client for all polls."""
    client = reader_client(settings or Settings.from_env())
    started = time.monotonic()

    def over(done: bool) -> bool:
        return done or time.monotonic() - started >= timeout_s

    # count() first: uniqExact on every poll would compete with a large ingest being measured.
    landed = landed_count(client, run_id)
    while not over(landed >= sent):
        time.sleep(0.25)
        landed = landed_count(client, run_id)
    landed_at = time.monotonic() if landed >= sent else None
    landed, distinct = counts(client, run_id)
    if distinct < sent:
        # A duplicate hid a span still on its way.
        while not over(distinct >= sent):
            time.sleep(0.25)
            landed, distinct = counts(client, run_id)
        landed_at = time.monotonic() if distinct >= sent else None
    if abandoned > 0:
        still_since = time.monotonic()
        while not over(
            distinct >= sent + abandoned or time.monotonic() - still_since >= ABANDONED_SETTLE_S
        ):
            time.sleep(0.5)
            now = counts(client, run_id)
            if now != (landed, distinct):
                (landed, distinct), still_since = now, time.monotonic()
    if landed == 0:
        return Audit(sent=sent, landed=0, distinct=0, abandoned=abandoned, landed_at=landed_at)
    p50, p99, worst = visibility_lag(client, run_id)
    return Audit(
        sent=sent,
        landed=landed,
        lag_p50_s=p50,
        lag_p99_s=p99,
        lag_max_s=worst,
        distinct=distinct,
        abandoned=abandoned,
        landed_at=landed_at,
    )
