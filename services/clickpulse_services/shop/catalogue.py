"""The e-commerce API's view of the product catalogue: the CRUD API over HTTP, so a cart or
checkout action is one distributed trace across both services (httpx is instrumented and
propagates the trace context)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from decimal import Decimal
from typing import Any

import httpx
import msgspec
from litestar.exceptions import HTTPException, NotFoundException, TooManyRequestsException
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.trace import TracerProvider

from clickpulse_services.common.admission import RETRY_AFTER_S

# httpx logs every request at INFO, through Litestar's queue handler: a log record and a
# thread hand-off per catalogue call, ~8 % of the shop's CPU in a profile under load.
logging.getLogger("httpx").setLevel(logging.WARNING)


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


class Catalogue:
    """Keep-alive connections to the CRUD API, as many as this process lets requests in (so a
    request never waits for one), and a timeout well below the load generator's 10 s: a slow
    CRUD API becomes a quick 503 here rather than a client timeout."""

    def __init__(
        self,
        base_url: str,
        tracer_provider: TracerProvider | None,
        *,
        timeout_s: float = 2.0,
        connections: int = 64,
    ) -> None:
        self.timeout_s = timeout_s
        self.client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        if tracer_provider is not None:
            HTTPXClientInstrumentor().instrument_client(
                self.client, tracer_provider=tracer_provider
            )

    async def _get(
        self, path: str, params: dict[str, Any] | None, headers: dict[str, Any] | None
    ) -> httpx.Response:
        try:
            # One deadline for the whole call: httpx's timeout applies to each phase (pool,
            # connect, write, read) in turn, which let a call take 4x as long under load.
            async with asyncio.timeout(self.timeout_s):
                response = await self.client.get(path, params=params, headers=headers)
        except TimeoutError as exc:
            raise _unavailable(
                f"the product catalogue (CRUD API) did not answer within {self.timeout_s:g} s"
            ) from exc
        except httpx.HTTPError as exc:
            raise _unavailable(
                f"the product catalogue (CRUD API) is unavailable: {type(exc).__name__}"
            ) from exc
        if response.status_code == 429:
            # The CRUD API counts the caller's forwarded token against the caller's own limit:
            # that is the caller's 429, not this service being unavailable.
            raise TooManyRequestsException(
                headers={
                    name: value
                    for name, value in response.headers.items()
                    if name.lower().startswith("ratelimit-") or name.lower() == "retry-after"
                },
            )
        if response.status_code not in (200, 404):
            # A 503 there (shed, or its database down) is a 503 here, with its Retry-After.
            raise _unavailable(f"the product catalogue answered {response.status_code}")
        return response

    async def product(
        self, product_id: int, headers: dict[str, Any] | None = None
    ) -> CatalogueProduct:
        response = await self._get(f"/products/{product_id}", None, headers)
        if response.status_code == 404:
            raise NotFoundException(detail=f"product {product_id} does not exist")
        return msgspec.json.decode(response.content, type=CatalogueProduct)

    async def products(
        self, product_ids: Collection[int], headers: dict[str, Any] | None = None
    ) -> dict[int, CatalogueProduct]:
        """Several products in one call (at most 100: an order's limit too)."""
        if not product_ids:
            return {}
        wanted = sorted(set(product_ids))
        response = await self._get("/products", {"ids": wanted, "limit": len(wanted)}, headers)
        found = {p.id: p for p in msgspec.json.decode(response.content, type=CataloguePage).items}
        missing = [pid for pid in wanted if pid not in found]
        if missing:
            raise NotFoundException(detail=f"products {missing} do not exist")
        return found

    async def close(self) -> None:
        await self.client.aclose()
