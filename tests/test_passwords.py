"""Password checks, in-process (no stack): both hash costs the services store verify right,
whether checked on the event loop (the published password's) or in a worker thread."""

from __future__ import annotations

import asyncio

import pytest
from clickpulse_services.common.passwords import (
    _cheap,
    check_password,
    hash_password,
    hash_published_password,
)

pytestmark = pytest.mark.no_stack


def test_the_published_passwords_hash_is_checked_on_the_loop_and_a_strong_one_is_not() -> None:
    assert _cheap(hash_published_password("clickpulse-demo"))
    assert not _cheap(asyncio.run(hash_password("a strong secret")))
    assert not _cheap("$2b$12$not-an-argon2-hash")


def test_a_check_tells_the_right_password_from_a_wrong_one_at_either_cost() -> None:
    async def checks() -> list[bool]:
        cheap = hash_published_password("clickpulse-demo")
        strong = await hash_password("a strong secret")
        return [
            await check_password("clickpulse-demo", cheap),
            await check_password("clickpulse-dem0", cheap),
            await check_password("a strong secret", strong),
            await check_password("a strong secreT", strong),
            # No such user: the decoy is checked, and the answer is no whatever the password.
            await check_password("not the password of anyone", None),
        ]

    assert asyncio.run(checks()) == [True, False, True, False, False]
