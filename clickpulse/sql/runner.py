"""Runs the analyst's statements one after another in one ClickHouse session, for the command
line and the shell alike."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import BinaryIO

import clickhouse_connect
from clickhouse_connect import common
from clickhouse_connect.driver.client import Client

from clickpulse.sql import formats, stream
from clickpulse.sql.script import Statement
from clickpulse.stack.settings import Settings

# ClickHouse's messages are the point of an error here: clickhouse-connect keeps 1,024
# characters by default, which cuts a syntax error's list of what was expected, and its name.
common.set_setting("max_error_size", 0)


def analyst_session(settings: Settings) -> Client:
    """A client in its own ClickHouse session, so `SET max_execution_time = 120` in the shell or
    at the top of a file holds for the statements after it (the analyst is readonly=2: it may
    change settings, not data)."""
    return clickhouse_connect.get_client(
        host=settings.ch_host,
        port=settings.ports.clickhouse_http,
        username=settings.ch_reader_user,
        password=settings.ch_reader_password,
        session_id=f"clickpulse-sql-{uuid.uuid4()}",
    )


@dataclass
class Runner:
    client: Client
    sink: BinaryIO
    to_terminal: bool
    max_rows: int = formats.DEFAULT_MAX_ROWS
    params: dict[str, object] = field(default_factory=dict)

    def run(self, statement: Statement, default_format: str) -> None:
        own = statement.format_clause
        if own is not None:
            formats.check_sink(own, to_terminal=self.to_terminal)
        fmt = default_format if own is None and statement.takes_format else None
        settings = formats.output_settings(to_terminal=self.to_terminal, max_rows=self.max_rows)
        try:
            stream.run(
                self.client,
                statement.text,
                fmt=fmt,
                params=self.params,
                settings=settings,
                sink=self.sink,
            )
        except stream.QueryFailed as failed:
            # A syntax error quotes the query's tail, which ends in the FORMAT we added.
            if fmt is not None:
                failed.message = failed.message.replace(f"\n FORMAT {fmt}", "")
            raise
