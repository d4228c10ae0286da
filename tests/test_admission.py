"""Admission control's queue in-process (common/admission.py): a burst waits for a slot, a full
queue and a standing one shed at once, a request that leaves while waiting frees what it held,
and an urgent one (RFC 9218's `Priority`, as the shop's calls send it) waits ahead. The real
service pushed past its limit is in test_capacity.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest
from clickpulse_services.common.admission import (
    BURST_WAIT_S,
    INTERVAL_S,
    STANDING_MEMORY_S,
    STANDING_WAIT_S,
    Admission,
)
from clickpulse_services.shop.catalogue import CALL_PRIORITY
from litestar.types import Message, Receive, Scope, Send

pytestmark = pytest.mark.no_stack


class Held:
    """An app whose requests stay in flight until `release()`."""

    def __init__(self) -> None:
        self.gates: list[asyncio.Event] = []
        self.served = 0
        # The `Priority` header of each request let in, in the order they were.
        self.priorities: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.priorities.append(dict(scope["headers"]).get(b"priority", b""))
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        self.served += 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})

    def release(self) -> None:
        for gate in self.gates:
            gate.set()


async def _call(
    admission: Admission, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, str, float]:
    """Status, shed detail and seconds taken of one request."""
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Any = {"type": "http", "path": "/products/1", "method": "GET", "headers": headers or []}
    loop = asyncio.get_running_loop()
    started = loop.time()
    await admission(scope, receive, send)
    taken = loop.time() - started
    status: int = sent[0]["status"]
    detail = msgspec.json.decode(sent[1]["body"])["detail"] if status == 503 else ""
    return status, detail, taken


def _admission(app: Held, limit: int = 1, max_queued: int = 8) -> Admission:
    return Admission(app, limit, lambda path, method: "/products/{product_id}", max_queued)


async def _occupied(
    max_queued: int = 8,
) -> tuple[Held, Admission, asyncio.Task[tuple[int, str, float]]]:
    """An admission of 1 in flight, and the request holding that slot."""
    app = Held()
    admission = _admission(app, max_queued=max_queued)
    held = asyncio.create_task(_call(admission))
    await asyncio.sleep(0)
    return app, admission, held


def test_a_request_past_the_limit_waits_for_a_slot_freed_within_the_burst_window() -> None:
    async def scenario() -> list[tuple[int, str, float]]:
        app, admission, first = await _occupied()
        second = asyncio.create_task(_call(admission))
        await asyncio.sleep(BURST_WAIT_S / 4)
        app.release()
        await asyncio.sleep(0.01)
        app.release()  # the second one's gate, made once it got the slot
        results = [await first, await second]
        assert admission.in_flight == 0 and admission.queued == 0
        return results

    (status_1, _, _), (status_2, _, _) = asyncio.run(scenario())
    assert (status_1, status_2) == (200, 200)


def test_a_full_queue_sheds_at_once_and_a_wait_past_its_deadline_sheds_with_503() -> None:
    async def scenario() -> list[tuple[int, str, float]]:
        app, admission, held = await _occupied(max_queued=1)
        waiting = asyncio.create_task(_call(admission))
        await asyncio.sleep(0)
        full = await _call(admission)
        timed_out = await waiting
        app.release()
        await held
        return [full, timed_out]

    (full_status, full_detail, full_s), (out_status, out_detail, out_s) = asyncio.run(scenario())
    assert full_status == 503 and "1 waiting" in full_detail
    assert full_s < BURST_WAIT_S / 2
    assert out_status == 503 and "no slot free in time" in out_detail
    assert out_s >= BURST_WAIT_S * 0.9


def test_once_waits_run_out_the_queue_is_standing_and_the_next_wait_is_short() -> None:
    async def scenario() -> list[tuple[int, str, float]]:
        app, admission, held = await _occupied()
        in_burst = await _call(admission)  # nothing frees the slot: runs out after BURST_WAIT_S
        standing = await _call(admission)
        # The queue emptied (the waits ran out) and stayed empty past INTERVAL_S: it still
        # stands, a wait ran out less than STANDING_MEMORY_S ago.
        await asyncio.sleep(INTERVAL_S * 1.5)
        still = await _call(admission)
        await asyncio.sleep(STANDING_MEMORY_S * 1.2)
        recovered = await _call(admission)  # no wait ran out for STANDING_MEMORY_S: a burst again
        app.release()
        await held
        return [in_burst, standing, still, recovered]

    in_burst, standing, still, recovered = asyncio.run(scenario())
    assert [r[0] for r in (in_burst, standing, still, recovered)] == [503, 503, 503, 503]
    assert in_burst[2] >= BURST_WAIT_S * 0.9
    # The standing queue's deadline, with room for a slow box (still well under the burst's).
    for short in (standing, still):
        assert STANDING_WAIT_S * 0.9 <= short[2] < (STANDING_WAIT_S + BURST_WAIT_S) / 2
    assert recovered[2] >= BURST_WAIT_S * 0.9


async def _served(app: Held, admission: Admission, task: asyncio.Task[Any]) -> int:
    """The status `task` got once every request is let through; nothing stays counted."""
    await asyncio.sleep(0)
    app.release()
    status: int = (await task)[0]
    assert admission.in_flight == 0 and admission.queued == 0
    return status


def test_a_standing_queue_holds_a_request_per_slot_and_sheds_the_next_at_once() -> None:
    async def scenario() -> tuple[int, str, int, list[tuple[int, str, float]]]:
        app, admission, held = await _occupied()
        await _call(admission)  # nothing frees the slot: its wait runs out, the queue stands
        waiting = asyncio.create_task(_call(admission))  # the one waiter a slot of 1 gets
        urgent = asyncio.create_task(_call(admission, [(b"priority", CALL_PRIORITY.encode())]))
        await asyncio.sleep(0)
        queued = admission.queued
        # Decided on arrival, before any wait's timer could run: no loop step in between.
        status, detail, _ = await _call(admission)
        for task in (held, urgent, waiting):  # one request served at a time
            while not task.done():
                app.release()
                await asyncio.sleep(0)
        assert admission.in_flight == 0 and admission.queued == 0
        return status, detail, queued, [held.result(), urgent.result()]

    status, detail, queued, served = asyncio.run(scenario())
    assert status == 503 and "1 requests in flight and as many waiting" in detail
    # The waiter and the urgent request (the shop's call, not held back by the cap) queued,
    # and the urgent one had the slot next.
    assert queued == 2
    assert [r[0] for r in served] == [200, 200]


def test_a_request_that_leaves_the_queue_frees_its_place() -> None:
    async def scenario() -> None:
        app, admission, held = await _occupied()
        gone = asyncio.create_task(_call(admission))
        after = asyncio.create_task(_call(admission))
        await asyncio.sleep(0)
        assert admission.queued == 2
        gone.cancel()  # the client went away while waiting
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert admission.queued == 1
        app.release()
        await held
        assert await _served(app, admission, after) == 200

    asyncio.run(scenario())


def test_a_slot_handed_to_a_request_cancelled_before_it_ran_goes_to_the_next_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        app, admission, held = await _occupied()
        handed = asyncio.create_task(_call(admission))
        next_one = asyncio.create_task(_call(admission))
        await asyncio.sleep(0)
        release = admission._release

        def release_then_cancel() -> None:
            # `held` hands its slot to `handed`, which is cancelled before it resumes.
            monkeypatch.setattr(admission, "_release", release)
            release()
            assert admission.queued == 1 and admission.in_flight == 1
            handed.cancel()

        monkeypatch.setattr(admission, "_release", release_then_cancel)
        app.release()
        await held
        with pytest.raises(asyncio.CancelledError):
            await handed
        # `handed` gave its slot on: `next_one` holds it, and nothing is counted twice.
        assert admission.queued == 0 and admission.in_flight == 1
        assert await _served(app, admission, next_one) == 200

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("priority", "ahead"),
    [
        (CALL_PRIORITY.encode(), True),
        (b"u=0, i", True),
        (b"i, u=1", True),
        (b"u=3", False),  # the default urgency
        (b"u=6", False),
        (b"urgent", False),  # not RFC 9218: as if not sent
    ],
)
def test_a_request_asking_for_more_urgency_waits_ahead_of_the_others(
    priority: bytes, ahead: bool
) -> None:
    async def scenario() -> list[bytes]:
        app, admission, held = await _occupied()
        earlier = asyncio.create_task(_call(admission))
        later = asyncio.create_task(_call(admission, [(b"priority", priority)]))
        await asyncio.sleep(0)
        assert admission.queued == 2
        for task in (held, earlier, later):  # one request served at a time
            while not task.done():
                app.release()
                await asyncio.sleep(0)
        assert admission.in_flight == 0 and admission.queued == 0
        return app.priorities

    priorities = asyncio.run(scenario())
    assert priorities == [b"", priority, b""] if ahead else [b"", b"", priority]


def test_a_wait_past_its_deadline_in_a_stall_of_the_loop_gets_a_slot_freed_meanwhile() -> None:
    async def scenario() -> tuple[int, str, float]:
        app, admission, held = await _occupied()
        waiting = asyncio.create_task(_call(admission))
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        # Due after the wait's deadline, but before the loop is back from its stall: without
        # the second look, the wait's timer (due first) would shed it.
        loop.call_later(BURST_WAIT_S * 1.5, app.release)
        time.sleep(BURST_WAIT_S * 3)  # the stall (a long callback, a garbage collection)
        await held
        await asyncio.sleep(0.01)
        app.release()
        return await waiting

    status, detail, _ = asyncio.run(scenario())
    assert status == 200, detail
