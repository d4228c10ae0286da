"""clickhouse-connect clients for the stack's three ClickHouse users."""

from __future__ import annotations

from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from clickpulse.stack.settings import Settings
from clickpulse.stack.topology import Node


def _client(
    settings: Settings, user: str, password: str, node: Node | None = None, **options: Any
) -> Client:
    """Node 1 unless told otherwise: in a cluster every node answers for the whole cluster.
    `options` go to clickhouse_connect.get_client (timeouts)."""
    return clickhouse_connect.get_client(
        host=node.host if node else settings.ch_host,
        port=node.http_port if node else settings.ports.clickhouse_http,
        username=user,
        password=password,
        # The analyst is readonly=2; clickhouse-connect must not try to change its settings.
        autogenerate_session_id=False,
        **options,
    )


def admin_client(settings: Settings, node: Node | None = None) -> Client:
    return _client(settings, settings.ch_admin_user, settings.ch_admin_password, node)


def reader_client(settings: Settings, node: Node | None = None, **options: Any) -> Client:
    """As the read-only analyst; `options` go to clickhouse_connect.get_client (timeouts)."""
    return _client(settings, settings.ch_reader_user, settings.ch_reader_password, node, **options)


def writer_client(settings: Settings) -> Client:
    return _client(settings, settings.ch_writer_user, settings.ch_writer_password)
