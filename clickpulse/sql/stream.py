"""One statement's result, copied from ClickHouse's HTTP response to a file as it arrives.

ClickHouse formats the rows itself (`raw_stream`), so nothing here holds more than one chunk of
the response, whatever the size of the result."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO, Protocol, cast

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError
from urllib3.exceptions import ProtocolError

_CHUNK = 64 * 1024
_SERVER_ERROR = re.compile(
    r"Code: (\d+)\. DB::Exception: (.*?)(?: \(([A-Z_0-9]+)\))?(?: \(version [^)]*\))?\.?\s*"
    r"(?:\(for url [^)]*\))?\s*$",
    re.S,
)


@dataclass
class QueryFailed(Exception):
    """ClickHouse refused or aborted a statement."""

    code: int
    name: str
    message: str


class OutputClosed(Exception):
    """Whoever read our output stopped reading (`| head`)."""


class _Response(Protocol):
    """What `raw_stream` answers on the HTTP interface (urllib3's HTTPResponse)."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    def stream(self, amt: int) -> Iterator[bytes]: ...

    def close(self) -> None: ...


def parse_server_error(text: str) -> QueryFailed:
    match = _SERVER_ERROR.search(text.strip())
    if match is None:
        return QueryFailed(0, "", text.strip())
    code, message, name = match.groups()
    return QueryFailed(int(code), name or "", message.strip())


def run(
    client: Client,
    sql: str,
    *,
    fmt: str | None,
    params: dict[str, object],
    settings: dict[str, object],
    sink: BinaryIO,
) -> str:
    """Runs `sql` and writes its result to `sink`; returns the format ClickHouse answered in."""
    try:
        response = cast(
            _Response,
            client.raw_stream(sql, parameters=params or None, settings=settings, fmt=fmt),
        )
    except OperationalError as exc:
        raise QueryFailed(0, "UNREACHABLE", str(exc)) from None
    except ClickHouseError as exc:
        raise parse_server_error(str(exc)) from None
    try:
        copy(response, sink)
    except ProtocolError as exc:
        raise QueryFailed(0, "UNREACHABLE", f"the connection broke mid-result: {exc}") from None
    finally:
        response.close()
    return str(response.headers.get("X-ClickHouse-Format", fmt or ""))


def copy(response: _Response, sink: BinaryIO) -> None:
    """Copies the body to `sink`, flushing each chunk so rows show as they arrive.

    An error after the first bytes (a limit reached half-way) cannot change the HTTP status any
    more: ClickHouse writes it into the body between `__exception__` markers carrying the tag
    of the X-ClickHouse-Exception-Tag header. It is cut out and raised, never written."""
    tag = response.headers.get("X-ClickHouse-Exception-Tag")
    marker = b"\r\n__exception__\r\n" + tag.encode() if tag else None
    held = b""
    for chunk in response.stream(_CHUNK):
        held += chunk
        if marker is not None:
            at = held.find(marker)
            if at >= 0:
                _write(sink, held[:at])
                rest = held[at + len(marker) :] + _rest(response)
                # "\r\n<message>\n<its length> <tag>\r\n__exception__\r\n"
                text = rest.decode(errors="replace").split(tag or "")[0]
                raise parse_server_error(re.sub(r"\n\d+ $", "", text))
            # Keep back what could be the start of a marker split across two chunks.
            keep = len(marker) - 1
            _write(sink, held[:-keep] if len(held) > keep else b"")
            held = held[-keep:] if len(held) > keep else held
        else:
            _write(sink, held)
            held = b""
    _write(sink, held)


def _rest(response: _Response) -> bytes:
    """What is left of a body ClickHouse may end without its last chunk after an error."""
    chunks: list[bytes] = []
    with contextlib.suppress(ProtocolError):
        chunks.extend(response.stream(_CHUNK))
    return b"".join(chunks)


def _write(sink: BinaryIO, data: bytes) -> None:
    if not data:
        return
    try:
        sink.write(data)
        sink.flush()
    except BrokenPipeError:
        raise OutputClosed() from None
