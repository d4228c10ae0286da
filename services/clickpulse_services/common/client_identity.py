"""Who is calling: client address (X-Forwarded-For honoured only from trusted proxies), region
derived from that address on the server side, session from the request (the user comes from
the verified token only: common/auth.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

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
