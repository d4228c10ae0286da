"""Rate limits: a fixed window per caller, the token's subject when signed in, else the client
address (as X-Forwarded-For from a trusted proxy gives it). Past the limit: 429 with
`Retry-After`; every answer carries the RateLimit headers of the IETF draft
(`RateLimit-Limit`, `-Remaining`, `-Reset`, `-Policy`), as Litestar's limiter sends them.

Not Litestar's `RateLimitMiddleware`: it keeps the timestamp of every request in the window,
JSON-encoded in a store, so a caller near a 1,200/minute limit cost ~1,200 numbers decoded and
encoded per request, under a lock; measured, ~900 us of CPU a request at one busy caller
(bench section 7). Here a window is two integers in a dict: O(1).

Counted in each worker process's memory: with N workers a caller spread over all of them gets
up to N times the limit (README, "Who may do what").
"""

from __future__ import annotations

import time

import msgspec
from litestar.enums import ScopeType
from litestar.exceptions import TooManyRequestsException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from clickpulse_services.common.client_identity import client_identity
from clickpulse_services.common.settings import ServiceSettings, parse_rate
from clickpulse_services.common.tokens import Principal

SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
NAMES = {
    b"ratelimit-limit": "RateLimit-Limit",
    b"ratelimit-remaining": "RateLimit-Remaining",
    b"ratelimit-reset": "RateLimit-Reset",
    b"ratelimit-policy": "RateLimit-Policy",
}
# Windows of callers gone quiet are dropped once this many are held.
MAX_CALLERS = 100_000


class Window(msgspec.Struct, gc=False):
    """Not tracked by the garbage collector (two integers cannot form a cycle). A window per
    caller stays until the next window: the load scenario's sessions each come from their own
    address, so a CRUD API process gained ~90 windows a second at 800 req/s. As ordinary
    objects they made a young collection every 20-40 s that found nothing to free and stopped
    the event loop ~20-40 ms, and their promotion to the older generations longer ones later
    (one cluster of shed 503s at 1,000 req/s met such a collection: README, "Capacity")."""

    ends: int
    count: int = 0


class Limit:
    """`count` requests per `seconds`, per caller key, in fixed windows aligned to the clock."""

    def __init__(self, rate: str) -> None:
        self.count, unit = parse_rate(rate)
        self.seconds = SECONDS[unit]
        self.policy = f"{self.count}; w={self.seconds}".encode()
        self.limit = str(self.count).encode()
        self.windows: dict[str, Window] = {}

    def take(self, key: str, now: float) -> Window:
        """The caller's window after counting this request (count > limit: refused)."""
        window = self.windows.get(key)
        if window is None or window.ends <= now:
            if len(self.windows) >= MAX_CALLERS:
                self.windows = {k: w for k, w in self.windows.items() if w.ends > now}
            window = self.windows[key] = Window(int(now // self.seconds + 1) * self.seconds)
        window.count += 1
        return window

    def headers(self, window: Window, now: float) -> list[tuple[bytes, bytes]]:
        remaining = max(0, self.count - window.count)
        return [
            (b"ratelimit-limit", self.limit),
            (b"ratelimit-remaining", str(remaining).encode()),
            (b"ratelimit-reset", str(max(1, int(window.ends - now + 0.999))).encode()),
            (b"ratelimit-policy", self.policy),
        ]


class RateLimits(ASGIMiddleware):
    """After authentication (it reads the verified user the auth middleware put in scope)."""

    scopes = (ScopeType.HTTP,)
    exclude_path_pattern = ("^/health$", "^/docs", "^/schema")

    def __init__(self, settings: ServiceSettings) -> None:
        self.users = Limit(settings.rate_limit_user)
        self.addresses = Limit(settings.rate_limit_anonymous)
        self.clients = client_identity(settings.trusted_proxies, settings.regions)

    def _caller(self, scope: Scope) -> tuple[Limit, str]:
        user = scope.get("user")
        if isinstance(user, Principal):
            return self.users, str(user.id)
        return self.addresses, self.clients.of(scope)[0]

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        limit, key = self._caller(scope)
        now = time.time()
        window = limit.take(key, now)
        headers = limit.headers(window, now)
        if window.count > limit.count:
            raise TooManyRequestsException(headers={NAMES[k]: v.decode() for k, v in headers})

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await next_app(scope, receive, with_headers)
