"""clickhouse-connect clients for the stack's three ClickHouse users."""

from __future__ import annotations

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from clickpulse.stack.settings import Settings


def _client(settings: Settings, user: str, password: str) -> Client:
    return clickhouse_connect.get_client(
        host=settings.ch_host,
        port=settings.ports.clickhouse_http,
        username=user,
        password=password,
        # The analyst is readonly=2; clickhouse-connect must not try to change its settings.
        autogenerate_session_id=False,
    )


def admin_client(settings: Settings) -> Client:
    return _client(settings, settings.ch_admin_user, settings.ch_admin_password)


def reader_client(settings: Settings) -> Client:
    return _client(settings, settings.ch_reader_user, settings.ch_reader_password)


def writer_client(settings: Settings) -> Client:
    return _client(settings, settings.ch_writer_user, settings.ch_writer_password)
