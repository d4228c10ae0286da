"""The e-commerce API's view of the product catalogue: the CRUD API over HTTP, so a cart or
checkout action is one distributed trace across both services (httpx is instrumented and
propagates the trace context)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import msgspec
from litestar.exceptions import HTTPException, NotFoundException
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.trace import TracerProvider


class CatalogueProduct(msgspec.Struct):
    id: int
    name: str
    category: str
    price: Decimal
    stock: int


class Catalogue:
    def __init__(self, base_url: str, tracer_provider: TracerProvider | None) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(5.0),
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        )
        if tracer_provider is not None:
            HTTPXClientInstrumentor().instrument_client(
                self.client, tracer_provider=tracer_provider
            )

    async def product(
        self, product_id: int, headers: dict[str, Any] | None = None
    ) -> CatalogueProduct:
        try:
            response = await self.client.get(f"/products/{product_id}", headers=headers)
        except httpx.HTTPError as exc:
            raise HTTPException(
                status_code=HTTP_503_SERVICE_UNAVAILABLE,
                detail=f"the product catalogue (CRUD API) is unavailable: {type(exc).__name__}",
            ) from exc
        if response.status_code == 404:
            raise NotFoundException(detail=f"product {product_id} does not exist")
        if response.status_code != 200:
            raise HTTPException(
                status_code=HTTP_503_SERVICE_UNAVAILABLE,
                detail=f"the product catalogue answered {response.status_code}",
            )
        return msgspec.json.decode(response.content, type=CatalogueProduct)

    async def close(self) -> None:
        await self.client.aclose()
