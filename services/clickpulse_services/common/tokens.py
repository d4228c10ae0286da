"""Access tokens: issuing them (CRUD API) and verifying them (both services).

A token is an RS256 JWT with `sub` (the user id), `roles`, `iss`, `aud`, `iat`, `nbf`, `exp` and
`jti`, and the signing key's id in its header. Verification accepts RS256 only (so `alg: none`
or an HMAC token signed with the public key cannot pass), checks every registered claim, and
answers each failure with a 401 that says which check failed.

Verified tokens are remembered until they expire: a session signs in once and sends the same
token with each request, and a hit costs a dictionary lookup instead of the 72 us of an RSA
verification. A change of the key set (rotation, a removed key) empties the memory.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import jwt
import msgspec
from litestar.exceptions import NotAuthorizedException

from clickpulse_services.common.signing_keys import ALGORITHM, SigningKeys

# Ours are ~600 bytes; anything much larger is not one of ours and is refused before parsing.
MAX_TOKEN_BYTES = 4096
REMEMBERED_TOKENS = 50_000
LEEWAY_S = 5  # clock skew tolerated between the services' hosts
ADMIN = "admin"


class Principal(msgspec.Struct, frozen=True, gc=False):
    """Who a verified token speaks for. Not tracked by the garbage collector (an id and role
    names cannot form a cycle): every token a process verifies is remembered with its principal,
    ~50 a second under the load scenario, and the collector would walk them all (see
    `rate_limits.Window`)."""

    id: int
    roles: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles


class KeySource(Protocol):
    def current_version(self) -> int: ...
    def public_key(self, kid: str) -> Any | None: ...
    async def look_for(self, kid: str) -> Any | None: ...


def unauthorized(detail: str) -> NotAuthorizedException:
    return NotAuthorizedException(
        detail=detail,
        headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{detail}"'},
    )


_FAILURES: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired; sign in again at POST /auth/token"),
    (jwt.ImmatureSignatureError, "the token is not valid yet (nbf or iat in the future)"),
    (jwt.InvalidIssuerError, "the token was not issued by this system (iss)"),
    (jwt.InvalidAudienceError, "the token is not meant for this system (aud)"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim"),
)


def _header(token: str) -> dict[str, Any]:
    """The JOSE header, read to pick the key. Not `jwt.get_unverified_header`: it decodes and
    checks every segment character by character in Python (~40 us for our tokens), and
    `jwt.decode` then does all of it again; the header alone is ~80 characters."""
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        raise unauthorized("the token is not a JWT") from None
    if not isinstance(header, dict):
        raise unauthorized("the token is not a JWT")
    return header


class TokenVerifier:
    def __init__(self, keys: KeySource, *, issuer: str, audience: str) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self._remembered: OrderedDict[str, tuple[Principal, float, int]] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        version = self.keys.current_version()
        hit = self._remembered.get(token)
        if hit is not None:
            principal, expires, seen_version = hit
            if seen_version == version and time.time() < expires:
                return principal
            del self._remembered[token]
        principal, expires = await self._verify(token)
        self._remembered[token] = (principal, expires, self.keys.current_version())
        if len(self._remembered) > REMEMBERED_TOKENS:
            self._remembered.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        if len(token) > MAX_TOKEN_BYTES:
            raise unauthorized(f"the token is larger than {MAX_TOKEN_BYTES} bytes")
        header = _header(token)
        if header.get("alg") != ALGORITHM:
            raise unauthorized(f"the token's algorithm must be {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise unauthorized("the token names no signing key (kid)")
        key = self.keys.public_key(kid) or await self.keys.look_for(kid)
        if key is None:
            raise unauthorized("the token was signed with a key this system does not know")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "nbf", "sub", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            for kind, detail in _FAILURES:
                if isinstance(exc, kind):
                    raise unauthorized(detail) from None
            raise unauthorized("the token is not valid") from None
        if claims["iat"] > time.time() + LEEWAY_S:
            raise unauthorized("the token is not valid yet (nbf or iat in the future)")
        sub, roles = claims["sub"], claims.get("roles", [])
        if not (isinstance(sub, str) and sub.isdigit() and 0 < int(sub) < 2**63):
            raise unauthorized("the token's subject is not a user id")
        if not (isinstance(roles, list) and all(isinstance(r, str) for r in roles)):
            raise unauthorized("the token's roles are not a list of names")
        return Principal(id=int(sub), roles=tuple(roles)), float(claims["exp"])


class TokenIssuer:
    def __init__(self, keys: SigningKeys, *, issuer: str, audience: str, ttl_s: int) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s

    def issue(self, user_id: int, roles: tuple[str, ...]) -> str:
        now = datetime.now(UTC)
        key = self.keys.current
        claims = {
            "sub": str(user_id),
            "roles": list(roles),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + timedelta(seconds=self.ttl_s),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
