"""The e-commerce API's copy of the CRUD API's JSON Web Key Set (its token-signing public keys).

Fetched at start-up, again every `max_age_s` (a removed key stops verifying within that time),
and at once when a token names a key id not in the copy, so a key rotation needs no restart.
Fetches for unknown key ids are at most one per `min_refetch_s`: tokens with made-up key ids
cannot make this process hammer the CRUD API.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
from jwt import PyJWKSet
from jwt.exceptions import PyJWKError, PyJWKSetError

log = logging.getLogger(__name__)


class RemoteJwks:
    def __init__(
        self,
        url: str,
        *,
        max_age_s: float = 300.0,
        min_refetch_s: float = 5.0,
        timeout_s: float = 2.0,
    ) -> None:
        self.url = url
        self.max_age_s = max_age_s
        self.min_refetch_s = min_refetch_s
        self.client = httpx.AsyncClient(timeout=timeout_s)
        self.version = 0
        self._keys: dict[str, Any] = {}
        self._fetched = float("-inf")
        self._attempted = float("-inf")

    async def fetch(self) -> bool:
        """Replaces the copy with the CRUD API's current key set; False if it could not."""
        self._attempted = time.monotonic()
        try:
            response = await self.client.get(self.url)
            response.raise_for_status()
            keys = PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, PyJWKError, PyJWKSetError) as exc:
            log.warning("could not fetch the JWKS from %s: %s", self.url, exc)
            return False
        fresh = {k.key_id: k.key for k in keys.keys if k.key_id}
        if fresh != self._keys:
            self._keys = fresh
            self.version += 1
        self._fetched = self._attempted
        return True

    def current_version(self) -> int:
        return self.version

    def public_key(self, kid: str) -> Any | None:
        return self._keys.get(kid)

    def stale(self) -> bool:
        return time.monotonic() - self._fetched > self.max_age_s

    async def look_for(self, kid: str) -> Any | None:
        """The key `kid`, fetching the key set again if it may have appeared since."""
        if time.monotonic() - self._attempted >= self.min_refetch_s:
            await self.fetch()
        return self._keys.get(kid)

    async def refresh_if_stale(self) -> None:
        if self.stale() and time.monotonic() - self._attempted >= self.min_refetch_s:
            await self.fetch()

    async def close(self) -> None:
        await self.client.aclose()
