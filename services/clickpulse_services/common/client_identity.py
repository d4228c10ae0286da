"""Who is calling: client address (X-Forwarded-For honoured only from trusted proxies), region
derived from that address on the server side, session from the request (the user comes from
the verified token only: common/auth.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import cache, lru_cache
from typing import Any

from clickpulse_services.common.settings import IPNetwork

SESSION_HEADER = "x-session-id"
RUN_HEADER = "x-clickpulse-run-id"


def _parse(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return None


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: Iterable[IPNetwork]
) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def client_address(
    peer: str | None, forwarded_for: str | None, proxies: Iterable[IPNetwork]
) -> str:
    """The right-most address not added by a trusted proxy (RFC 7239 practice): a client can
    prepend anything to X-Forwarded-For, but cannot forge what our proxies appended."""
    proxies = tuple(proxies)
    current = _parse(peer) if peer else None
    if current is None:
        return peer or ""
    if not forwarded_for or not _trusted(current, proxies):
        return str(current)
    for hop in reversed(forwarded_for.split(",")):
        parsed = _parse(hop)
        if parsed is None:
            break
        current = parsed
        if not _trusted(parsed, proxies):
            break
    return str(current)


def region_of(address: str, regions: Iterable[tuple[IPNetwork, str]]) -> str:
    parsed = _parse(address)
    if parsed is None:
        return "unknown"
    for network, name in regions:
        if parsed.version == network.version and parsed in network:
            return name
    return "unknown"


_SCOPE_KEY = "clickpulse.client"


class ClientIdentity:
    """(client address, region) of an ASGI request, worked out once per request: the server
    span, the rate limiter and the shop's forwarded headers all read it from the scope.

    Load comes from a bounded set of clients: each (peer, X-Forwarded-For) pair is parsed and
    matched against the proxies and regions once, not per request (a measurable share of a
    request's CPU when the server span, the rate limiter and the shop each did it)."""

    def __init__(
        self, proxies: tuple[IPNetwork, ...], regions: tuple[tuple[IPNetwork, str], ...]
    ) -> None:
        # Keyed on the two strings only: a key holding the networks hashed each one per call.
        @lru_cache(maxsize=4096)
        def resolve(peer: str | None, forwarded_for: bytes | None) -> tuple[str, str]:
            forwarded = forwarded_for.decode("latin-1") if forwarded_for else None
            address = client_address(peer, forwarded, proxies)
            return address, region_of(address, regions)

        self.resolve = resolve

    def of(self, scope: Any) -> tuple[str, str]:
        state = scope.setdefault("state", {})
        found: tuple[str, str] | None = state.get(_SCOPE_KEY)
        if found is None:
            peer = scope.get("client")
            forwarded_for = None
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    forwarded_for = value
                    break
            found = state[_SCOPE_KEY] = self.resolve(peer[0] if peer else None, forwarded_for)
        return found


@cache
def client_identity(
    proxies: tuple[IPNetwork, ...], regions: tuple[tuple[IPNetwork, str], ...]
) -> ClientIdentity:
    """The process's one ClientIdentity for these settings: the server span, the rate limiter
    and the shop share its cache."""
    return ClientIdentity(proxies, regions)
