"""Password hashing: argon2id through pwdlib, at OWASP's minimum cost (19 MiB, 2 passes, 1 lane).

Measured on the 2-core box: 22 ms of CPU per hash or check at these settings, 165 ms at
argon2-cffi's defaults (64 MiB, 3 passes, 4 lanes). Checks run in a worker thread (argon2-cffi
releases the GIL), so a sign-in does not stall the event loop for 22 ms.

The demo users' password is published (README), so its hash protects nothing: it is hashed at
argon2's lowest cost (256 KiB, 1 pass: 0.2 ms). Each load-scenario session signs in once; at
the OWASP cost, sign-ins alone took a quarter of a core at 100 req/s and the services shed a
fifth of the requests. The check reads the cost from the stored hash, so one verifier serves
both kinds; a hash that cheap is checked on the event loop (`INLINE_KIB_PASSES`).
"""

from __future__ import annotations

from functools import cache

import anyio.to_thread
from argon2 import extract_parameters
from argon2.exceptions import InvalidHashError
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

MIN_LENGTH = 8
MAX_LENGTH = 128
# A stored hash at most this costly (memory KiB x passes) is checked on the event loop: the
# published password's (256 x 1) takes ~0.13 ms of CPU there, and handing it to a worker thread
# cost ~0.38 ms (anyio's hop, the GIL passed back and forth; 2026-12-03, 2,000 checks each).
# Each load session signs in once: ~1 request in 8 of the mixed scenario.
INLINE_KIB_PASSES = 1024


@cache
def hasher() -> PasswordHash:
    return PasswordHash((Argon2Hasher(time_cost=2, memory_cost=19_456, parallelism=1),))


@cache
def _published() -> PasswordHash:
    return PasswordHash((Argon2Hasher(time_cost=1, memory_cost=256, parallelism=1),))


def hash_published_password(password: str) -> str:
    """For a password everyone knows (the demo password): no cost worth paying."""
    return _published().hash(password)


@cache
def _decoy() -> str:
    return hasher().hash("not the password of anyone")


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(hasher().hash, password)


async def check_password(password: str, stored: str | None) -> bool:
    """True when `password` matches `stored`. Without a stored hash (no such user, or one who
    has no password) a decoy hash is checked all the same, so the time taken does not tell
    which email addresses exist."""
    candidate = stored or _decoy()
    if _cheap(candidate):
        matches = hasher().verify(password, candidate)
    else:
        matches = await anyio.to_thread.run_sync(hasher().verify, password, candidate)
    return bool(matches) and stored is not None


def _cheap(stored: str) -> bool:
    try:
        cost = extract_parameters(stored)
    except InvalidHashError:  # not argon2: pwdlib's verify says what it is
        return False
    return cost.memory_cost * cost.time_cost <= INLINE_KIB_PASSES
