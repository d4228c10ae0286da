"""Idle keep-alive connections to the stack's services outlive their clients' pools
(clickpulse/stack/components.py, KEEP_ALIVE_OPTION): a connection idle for longer than
uvicorn's default of 5 s still carries the next request, on the real services."""

from __future__ import annotations

import socket
import time

import pytest

from clickpulse.stack.settings import Settings

REQUEST = b"GET /health HTTP/1.1\r\nHost: clickpulse\r\n\r\n"


def _response(sock: socket.socket) -> bytes:
    """One whole response (headers and a Content-Length body); b"" if the server closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        if not (chunk := sock.recv(65536)):
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        if not (chunk := sock.recv(65536)):
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize("service", ["crud_api", "ecommerce_api"])
def test_a_connection_idle_past_uvicorns_default_still_answers(
    settings: Settings, service: str
) -> None:
    port = getattr(settings.ports, service)
    with socket.create_connection((settings.host, port), timeout=10) as sock:
        sock.sendall(REQUEST)
        assert _response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(6)  # uvicorn's default keep-alive timeout is 5 s
        sock.sendall(REQUEST)
        assert _response(sock).startswith(b"HTTP/1.1 200"), "the service closed the connection"
