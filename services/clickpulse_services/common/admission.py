"""Admission control: past its capacity a service process answers at once, instead of queueing.

Without it, a process offered more than it can serve kept every request: the event loop, the
database pool and the shop's calls to the CRUD API queued them until clients gave up (at 2.5x
capacity, p50 2-5 s and 65 % failed). Here at most `limit` requests are in flight per process;
the next one gets 503 with `Retry-After` in well under a millisecond of CPU, so the ones let in
keep their latency and the shed ones learn it at once. The middleware sits inside the
server-span middleware: a shed request is a span like any other (status 503, its route).
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseStartEvent, Receive, Scope, Send

# Never shed: the stack's health checks must see a busy process as alive.
EXEMPT_PATHS = frozenset(("/health",))
RETRY_AFTER_S = 1


def shed_response(detail: str) -> tuple[HTTPResponseStartEvent, bytes]:
    """The start message and body of a 503 that tells the client when to come back."""
    body = msgspec.json.encode({"status_code": 503, "detail": detail})
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 503,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(RETRY_AFTER_S).encode()),
        ],
    }
    return start, body


class Admission:
    """At most `limit` requests in flight in this process; the others get 503 + Retry-After.

    `route_of(path, method)` names the route of a shed request (for its span), without running
    the request."""

    def __init__(
        self, app: ASGIApp, limit: int, route_of: Callable[[str, str], str | None]
    ) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0
        self.route_of = route_of
        self.shed_start, self.shed_body = shed_response(
            f"over capacity: {limit} requests in flight in this process; "
            f"retry after {RETRY_AFTER_S} s"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            if template := self.route_of(scope["path"], scope["method"]):
                scope["path_template"] = template
            await send(self.shed_start)
            await send({"type": "http.response.body", "body": self.shed_body, "more_body": False})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
