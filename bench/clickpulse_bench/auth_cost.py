"""What authentication costs a request, in-process: the services' own bearer-token middleware,
verifier and rate limits around a handler shaped like `GET /products/{id}`, called through
ASGI with no network and no database, side by side in one run."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clickpulse_load.config import load_config
from clickpulse_services.common.auth import bearer_auth
from clickpulse_services.common.rate_limits import RateLimits
from clickpulse_services.common.settings import ServiceSettings
from clickpulse_services.common.signing_keys import SigningKeys
from clickpulse_services.common.tokens import TokenIssuer, TokenVerifier
from litestar import Litestar, get
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.types import ASGIApp, Scope

from clickpulse.stack import jwt_keys
from clickpulse.stack.settings import Settings
from clickpulse_bench.common import console
from clickpulse_bench.report import md_table
from clickpulse_bench.span_cost import HEADERS, per_request_us, product_scope


@get("/products/{product_id:int}", sync_to_thread=False)
def _product(product_id: FromPath[int]) -> dict[str, Any]:
    return {"id": product_id, "name": "Widget", "category": "books", "price": "12.50"}


# What the load generator sends, without the span bench's stand-in token.
BASE_HEADERS = [h for h in HEADERS if h[0] != b"authorization"]


def _requests(tokens: list[str | None]) -> Callable[[int], Scope]:
    """The i-th request sends tokens[i] (None: no Authorization header)."""
    headers = [
        [*BASE_HEADERS, (b"authorization", f"Bearer {t}".encode())] if t else BASE_HEADERS
        for t in tokens
    ]
    return lambda i: product_scope(i % 50 + 1, headers[i])


async def _per_request_us(app: ASGIApp, tokens: list[str | None]) -> float:
    return await per_request_us(app, _requests(tokens), len(tokens))


def _mean_session_requests() -> float:
    """Requests per session of the default load scenario, sign-in not counted."""
    config = load_config()
    total = sum(t.weight for t in config.user_types)
    return sum(t.weight * statistics.mean(t.requests_per_session) for t in config.user_types) / (
        total
    )


def bench_auth_cost(requests: int, rounds: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as folder:
        jwt_keys.ensure(Path(folder))
        settings = ServiceSettings.from_env("crud-api")
        keys = SigningKeys(folder)
        issuer = TokenIssuer(
            keys, issuer=settings.jwt_issuer, audience=settings.jwt_audience, ttl_s=900
        )
        # Big enough that no caller reaches its limit: the limiter's cost is counted, never a 429.
        settings = dataclasses.replace(
            settings, rate_limit_user="100000000/minute", rate_limit_anonymous="100000000/minute"
        )

        def app(with_auth: bool) -> Litestar:
            if not with_auth:
                return Litestar([_product])
            return Litestar(
                [_product],
                on_app_init=[bearer_auth().on_app_init],
                middleware=[RateLimits(settings)],
                state=State(
                    {
                        "tokens": TokenVerifier(
                            keys, issuer=settings.jwt_issuer, audience=settings.jwt_audience
                        )
                    }
                ),
            )

        one = issuer.issue(4242, ())
        fresh = [issuer.issue(1 + i % 5000, ()) for i in range(requests + 500)]
        plain, authed = app(False), app(True)
        runs: dict[str, list[float]] = {k: [] for k in ("off", "anonymous", "remembered", "new")}
        # Interleaved rounds, medians: the four are measured under the same conditions.
        for _ in range(rounds):
            runs["off"].append(asyncio.run(_per_request_us(plain, [None] * requests)))
            runs["anonymous"].append(asyncio.run(_per_request_us(authed, [None] * requests)))
            runs["remembered"].append(asyncio.run(_per_request_us(authed, [one] * requests)))
            new_app = app(True)  # an empty memory of verified tokens
            runs["new"].append(asyncio.run(_per_request_us(new_app, list(fresh[:requests]))))
    off, anonymous, remembered, new = (statistics.median(runs[k]) for k in runs)
    session = _mean_session_requests()
    # Each service verifies a session's token once, then remembers it for the session's other
    # requests (the shop forwards it to the CRUD API, which verifies it once too).
    amortized = remembered + (new - remembered) / session
    return [
        {
            "request": "no authentication, no rate limits",
            "CPU us/request": round(off, 1),
            "vs first row": "",
            "token verification": "",
        },
        {
            "request": "anonymous (auth middleware + rate limits)",
            "CPU us/request": round(anonymous, 1),
            "vs first row": f"+{anonymous - off:.1f}",
            "token verification": "",
        },
        {
            "request": "bearer token already verified (remembered)",
            "CPU us/request": round(remembered, 1),
            "vs first row": f"+{remembered - off:.1f}",
            "token verification": f"+{remembered - anonymous:.1f}",
        },
        {
            "request": "a token never seen before (RS256 verification)",
            "CPU us/request": round(new, 1),
            "vs first row": f"+{new - off:.1f}",
            "token verification": f"+{new - anonymous:.1f}",
        },
        {
            "request": f"load scenario: one new token per session ({session:.1f} requests)",
            "CPU us/request": round(amortized, 1),
            "vs first row": f"+{amortized - off:.1f}",
            "token verification": f"+{amortized - anonymous:.1f}",
        },
    ]


def section(settings: Settings, quick: bool, note: str) -> str:
    rows = bench_auth_cost(1_000 if quick else 5_000, 1 if quick else 5)
    console.print(rows)
    return (
        "## 7. Authentication cost\n\nThe services' bearer-token middleware, verifier and rate"
        " limiters (`clickpulse_bench/auth_cost.py`)\naround a handler shaped like"
        " `GET /products/{id}`, called through ASGI in-process (no network,\nno database):"
        " medians of interleaved rounds. A verified token is remembered until it expires,\nso"
        " a session pays one RS256 verification per service; the goal is at most 50 us of CPU"
        " a\nrequest for verification (last column: beside an anonymous request, which"
        " passes the same\nmiddleware and limits).\n\n" + md_table(rows) + note
    )
