"""The rules' queries, as the read-only analyst, with timeouts short enough for an evaluation
round: an unreachable or hung ClickHouse is ClickHouseUnavailable within 5 s, not a minute."""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from clickpulse.monitoring.evaluation import ClickHouseUnavailable
from clickpulse.stack.clickhouse_client import reader_client
from clickpulse.stack.settings import Settings


class ClickHouseQuery:
    def __init__(self, settings: Settings, *, timeout_s: float = 5.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._client: Client | None = None

    def _connected(self) -> Client:
        if self._client is None:
            self._client = reader_client(
                self.settings,
                connect_timeout=min(2.0, self.timeout_s),
                send_receive_timeout=self.timeout_s,
            )
        return self._client

    def __call__(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        try:
            result = self._connected().query(sql)
        except OperationalError as exc:
            # A new client (and connection pool) next time: the server may have restarted.
            self._client = None
            raise ClickHouseUnavailable(_reason(str(exc))) from exc
        return list(result.column_names), [tuple(row) for row in result.result_rows]


def _reason(text: str) -> str:
    """urllib3's message, said shortly: "connection refused", "timed out", else its start."""
    lowered = text.lower()
    if "connection refused" in lowered:
        return "connection refused"
    if "timed out" in lowered or "timeout" in lowered:
        return "timed out"
    return " ".join(text.split())[:200]
