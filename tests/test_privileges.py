"""Least privilege on the ClickHouse network ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from clickpulse.stack.settings import Settings

ACCESS_DENIED = "ACCESS_DENIED"
FILE_READS = [
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:8123/ping', 'LineAsString')",
    "SELECT * FROM executable('cat /etc/passwd', 'LineAsString', 'line String')",
]


def _denied(client: Client, sql: str) -> str:
    with pytest.raises(DatabaseError) as info:
        client.query(sql)
    return str(info.value)


def test_reader_can_read_otel_and_analytics(reader: Client) -> None:
    assert reader.query("SELECT count() FROM otel.otel_traces").result_rows[0][0] >= 0
    assert reader.query("SHOW TABLES FROM analytics").result_rows is not None


def test_reader_cannot_insert_or_drop(reader: Client) -> None:
    error = _denied(reader, "INSERT INTO otel.otel_traces (TraceId) VALUES ('x')")
    assert "readonly" in error.lower() or ACCESS_DENIED in error
    error = _denied(reader, "DROP TABLE otel.otel_traces")
    assert "readonly" in error.lower() or ACCESS_DENIED in error
    # Still there.
    assert reader.query("EXISTS TABLE otel.otel_traces").result_rows[0][0] == 1


@pytest.mark.parametrize("sql", FILE_READS)
def test_no_network_user_reads_local_files(
    sql: str, admin: Client, reader: Client, writer: Client
) -> None:
    for client in (admin, reader, writer):
        error = _denied(client, sql)
        assert ACCESS_DENIED in error or "READONLY" in error, error
        assert "root:x:0:0" not in error


def test_the_passwordless_default_user_reads_nothing(settings: Settings) -> None:
    import clickhouse_connect

    try:
        default = clickhouse_connect.get_client(
            host=settings.host,
            port=settings.ports.clickhouse_http,
            username="default",
            password="",
            autogenerate_session_id=False,
        )
    except DatabaseError:
        return  # refused outright: even better
    for sql in [*FILE_READS, "SELECT count() FROM otel.otel_traces", "SHOW DATABASES"]:
        error = _denied(default, sql) if "SHOW" not in sql else None
        if error is not None:
            assert ACCESS_DENIED in error, error
    assert [r[0] for r in default.query("SHOW DATABASES").result_rows] in (
        [],
        ["INFORMATION_SCHEMA", "information_schema", "system"],
        ["system"],
    )


@pytest.fixture
def analytics_probe(admin: Client) -> Iterator[str]:
    admin.command("CREATE TABLE IF NOT EXISTS analytics.privilege_probe (n UInt8) ENGINE = Memory")
    admin.insert("analytics.privilege_probe", [[1]], column_names=["n"])
    yield "analytics.privilege_probe"
    admin.command("DROP TABLE IF EXISTS analytics.privilege_probe")


def test_writer_inserts_into_otel_only(
    writer: Client, reader: Client, analytics_probe: str
) -> None:
    assert reader.query(f"SELECT count() FROM {analytics_probe}").result_rows[0][0] == 1
    assert ACCESS_DENIED in _denied(writer, f"SELECT count() FROM {analytics_probe}")
    assert ACCESS_DENIED in _denied(writer, "SELECT count() FROM otel.otel_traces")
    assert ACCESS_DENIED in _denied(writer, "DROP TABLE otel.otel_traces")
    assert ACCESS_DENIED in _denied(writer, "CREATE TABLE otel.x (a UInt8) ENGINE = Memory")
