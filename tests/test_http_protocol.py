"""The services' uvicorn protocol (common/http_protocol.py) writes a response in one piece, and
still writes every byte, in order, of a response sent over several loop steps. In-process, on
a transport that records its writes (a real socket cannot tell one write from two)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from clickpulse_services.common.http_protocol import CoalescingHttpToolsProtocol
from uvicorn.config import Config
from uvicorn.server import ServerState

from clickpulse.stack.components import HTTP_PROTOCOL

pytestmark = pytest.mark.no_stack


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8001)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def one_response(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]}
    )
    await send({"type": "http.response.body", "body": b"hello"})


async def streamed_response(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for part in (b"one ", b"two ", b"three"):
        await send({"type": "http.response.body", "body": part, "more_body": True})
        await asyncio.sleep(0.01)  # the next part comes in a later loop step
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _serve(app: Any) -> RecordingTransport:
    config = Config(app=app, http=HTTP_PROTOCOL, lifespan="off", log_level="warning")
    config.load()
    protocol = CoalescingHttpToolsProtocol(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    transport = RecordingTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
    await asyncio.sleep(0.2)
    return transport


def test_the_stack_serves_with_this_protocol() -> None:
    assert Config(app=one_response, http=HTTP_PROTOCOL).http == HTTP_PROTOCOL
    module, _, name = HTTP_PROTOCOL.partition(":")
    assert (module, name) == (CoalescingHttpToolsProtocol.__module__, "CoalescingHttpToolsProtocol")


def test_a_response_is_one_write() -> None:
    transport = asyncio.run(_serve(one_response))
    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b"hello"


def test_a_response_over_several_steps_arrives_whole_and_in_order() -> None:
    transport = asyncio.run(_serve(streamed_response))
    assert len(transport.writes) > 1
    data = b"".join(transport.writes)
    assert data.startswith(b"HTTP/1.1 200 OK")
    chunks = data.partition(b"\r\n\r\n")[2]
    assert chunks == b"4\r\none \r\n4\r\ntwo \r\n5\r\nthree\r\n0\r\n\r\n"
