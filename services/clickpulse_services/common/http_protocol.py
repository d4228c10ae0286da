"""uvicorn's httptools protocol, with what a response writes in one event-loop step sent in one
piece: `uvicorn --http clickpulse_services.common.http_protocol:CoalescingHttpToolsProtocol`.

uvicorn writes a response's head when the app sends `http.response.start` and its body when
the app sends `http.response.body`: two `send()` system calls per response. On this VM a system
call is dear: in a py-spy profile of `GET /products/{id}` the two writes were ~20 % of the
request's CPU. Here the protocol's writes are kept until the end of the event-loop step (one
`call_soon`), then written together: the app sends both messages in one step, so a response is
one system call, and nothing waits longer than the step.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """The connection's transport, with the writes of one loop step joined into one."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data if isinstance(data, bytes) else bytes(data))

    def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        if not self._transport.is_closing():  # the client went away: nowhere to write
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        # Everything else (extra info, flow control, is_closing) is the real transport's.
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        coalescing = CoalescingTransport(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(cast(asyncio.Transport, coalescing))
