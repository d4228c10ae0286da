"""The e-commerce API's view of the product catalogue: the CRUD API over HTTP, so a cart or
checkout action is one distributed trace across both services (the aiohttp session is
instrumented: a CLIENT span per call, and the W3C trace context goes along)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from decimal import Decimal

import aiohttp
import msgspec
from litestar.exceptions import HTTPException, NotFoundException, TooManyRequestsException
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.trace import TracerProvider

from clickpulse_services.common.admission import RETRY_AFTER_S

# uvicorn, as the stack serves the CRUD API, closes a connection idle for 75 s
# (clickpulse/stack/components.py, KEEP_ALIVE_OPTION): closing ours first means a request is
# not sent on one the server is closing at that moment (aiohttp would retry a GET once on a
# fresh connection, but that is a wasted round trip).
KEEPALIVE_S = 60.0
# RFC 9218 urgency (0-7, 3 the default): above a client's own requests.
CALL_PRIORITY = "u=2"


class CatalogueProduct(msgspec.Struct):
    id: int
    name: str
    category: str
    price: Decimal
    stock: int


class CataloguePage(msgspec.Struct):
    items: list[CatalogueProduct]


def _unavailable(detail: str) -> HTTPException:
    return HTTPException(
        status_code=HTTP_503_SERVICE_UNAVAILABLE,
        detail=detail,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _session(
    base_url: str, connections: int, tracer_provider: TracerProvider | None
) -> aiohttp.ClientSession:
    def make() -> aiohttp.ClientSession:
        # aiohttp, not httpx: under 400 req/s the catalogue call was ~1/3 of the shop's CPU,
        # most of it httpcore's pool management (a poll() on each of the pooled connections per
        # request, to see whether it expired) and anyio's cancel scopes; aiohttp's connector
        # learns of a closed connection from the event loop instead. Measured on POST /cart
        # (k6, 20 VUs, closed loop, alternating 10 s rounds): the shop's CPU per request, its
        # span relay included, went from 5.5-6.1 ms to 2.3-2.8 ms (medians of three runs of 6
        # rounds; per-round ratio 0.35-0.53, where the same harness A/A gives 0.88-1.10).
        return aiohttp.ClientSession(
            base_url=base_url,
            connector=aiohttp.TCPConnector(limit=connections, keepalive_timeout=KEEPALIVE_S),
            # No timeouts of aiohttp's own: `Catalogue._get` sets one deadline for the call.
            timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_read=None),
            # One session serves every caller: a cookie one caller's call got must not go along
            # with another's (the CRUD API sets none; this also skips the jar's work per call).
            cookie_jar=aiohttp.DummyCookieJar(),
            # Ahead in the CRUD API's admission queue (common/admission.py): this call is part
            # of a cart or checkout request the shop already admitted and half served, and
            # shedding it wastes that work and keeps the shop's slot until the 503 comes back.
            headers={"Priority": CALL_PRIORITY},
        )

    if tracer_provider is None:
        return make()
    # The instrumentor, not `create_trace_config()`: only it reads
    # OTEL_SEMCONV_STABILITY_OPT_IN (common/telemetry.py), so the client spans carry the
    # stable names (http.response.status_code, server.address, url.full); the trace config on
    # its own defaults to the old ones (http.status_code, http.url). Instrumented around this
    # session's creation only, so no other ClientSession in the process is patched.
    instrumentor = AioHttpClientInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    try:
        return make()
    finally:
        instrumentor.uninstrument()


class Catalogue:
    """Keep-alive connections to the CRUD API, as many as this process lets requests in (so a
    request never waits for one), and a timeout well below the load generator's 10 s: a slow
    CRUD API becomes a quick 503 here rather than a client timeout.

    Made inside the running event loop (the app's startup hook), as aiohttp requires."""

    def __init__(
        self,
        base_url: str,
        tracer_provider: TracerProvider | None,
        *,
        timeout_s: float = 2.0,
        connections: int = 64,
    ) -> None:
        self.timeout_s = timeout_s
        self.session = _session(base_url, connections, tracer_provider)

    async def _get(
        self,
        path: str,
        params: list[tuple[str, int]] | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[int, bytes]:
        """(status, body) of a 200 or 404; anything else raised as this service's answer."""
        try:
            # One deadline for the whole call: connecting, sending, the answer and its body.
            async with (
                asyncio.timeout(self.timeout_s),
                self.session.get(path, params=params, headers=headers) as response,
            ):
                # Read whatever the answer, so the connection goes back to the pool (one
                # left unread is closed).
                body = await response.read()
                status = response.status
                if status in (200, 404):
                    return status, body
                limits = _rate_limit_headers(response.headers)
        except TimeoutError as exc:
            raise _unavailable(
                f"the product catalogue (CRUD API) did not answer within {self.timeout_s:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise _unavailable(
                f"the product catalogue (CRUD API) is unavailable: {type(exc).__name__}"
            ) from exc
        if status == 429:
            # The CRUD API counts the caller's forwarded token against the caller's own limit:
            # that is the caller's 429, not this service being unavailable.
            raise TooManyRequestsException(headers=limits)
        # A 503 there (shed, or its database down) is a 503 here, with its Retry-After.
        raise _unavailable(f"the product catalogue answered {status}")

    async def product(
        self, product_id: int, headers: Mapping[str, str] | None = None
    ) -> CatalogueProduct:
        status, body = await self._get(f"/products/{product_id}", None, headers)
        if status == 404:
            raise NotFoundException(detail=f"product {product_id} does not exist")
        return msgspec.json.decode(body, type=CatalogueProduct)

    async def products(
        self, product_ids: Collection[int], headers: Mapping[str, str] | None = None
    ) -> dict[int, CatalogueProduct]:
        """Several products in one call (at most 100: an order's limit too)."""
        if not product_ids:
            return {}
        wanted = sorted(set(product_ids))
        # `?ids=1&ids=2&limit=2`: the CRUD API reads repeated `ids`.
        query = [("ids", pid) for pid in wanted] + [("limit", len(wanted))]
        _, body = await self._get("/products", query, headers)
        found = {p.id: p for p in msgspec.json.decode(body, type=CataloguePage).items}
        missing = [pid for pid in wanted if pid not in found]
        if missing:
            raise NotFoundException(detail=f"products {missing} do not exist")
        return found

    async def close(self) -> None:
        await self.session.close()


def _rate_limit_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        name: value
        for name, value in headers.items()
        if name.lower().startswith("ratelimit-") or name.lower() == "retry-after"
    }
