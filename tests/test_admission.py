"""Admission control's queue in-process (common/admission.py): a burst waits for a slot, a full
queue and a standing one shed at once, and a request that leaves while waiting frees what it
held. The real service pushed past its limit is in test_capacity.py."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from clickpulse_services.common.admission import BURST_S, STANDING_S, Admission
from litestar.types import Message, Receive, Scope, Send

pytestmark = pytest.mark.no_stack


class Held:
    """An app whose requests stay in flight until `release()`."""

    def __init__(self) -> None:
        self.gates: list[asyncio.Event] = []
        self.served = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        self.served += 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})

    def release(self) -> None:
        for gate in self.gates:
            gate.set()


async def _call(admission: Admission) -> tuple[int, str, float]:
    """Status, shed detail and seconds taken of one request."""
    sent: list[Message] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Any = {"type": "http", "path": "/products/1", "method": "GET", "headers": []}
    loop = asyncio.get_running_loop()
    started = loop.time()
    await admission(scope, receive, send)
    taken = loop.time() - started
    status: int = sent[0]["status"]
    detail = msgspec.json.decode(sent[1]["body"])["detail"] if status == 503 else ""
    return status, detail, taken


def _admission(app: Held, limit: int = 1, max_queued: int = 8) -> Admission:
    return Admission(app, limit, lambda path, method: "/products/{product_id}", max_queued)


def test_a_request_past_the_limit_waits_for_a_slot_freed_within_the_burst_window() -> None:
    async def scenario() -> list[tuple[int, str, float]]:
        app = Held()
        admission = _admission(app)
        first = asyncio.create_task(_call(admission))
        await asyncio.sleep(0)
        second = asyncio.create_task(_call(admission))
        await asyncio.sleep(BURST_S / 4)
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
        app = Held()
        admission = _admission(app, max_queued=1)
        held = asyncio.create_task(_call(admission))
        await asyncio.sleep(0)
        waiting = asyncio.create_task(_call(admission))
        await asyncio.sleep(0)
        full = await _call(admission)
        timed_out = await waiting
        app.release()
        await held
        return [full, timed_out]

    (full_status, full_detail, full_s), (out_status, out_detail, out_s) = asyncio.run(scenario())
    assert full_status == 503 and "1 waiting" in full_detail
    assert full_s < BURST_S / 2
    assert out_status == 503 and "no slot free in time" in out_detail
    assert out_s >= BURST_S * 0.9


def test_once_waits_run_out_the_queue_is_standing_and_the_next_wait_is_short() -> None:
    async def scenario() -> list[tuple[int, str, float]]:
        app = Held()
        admission = _admission(app)
        held = asyncio.create_task(_call(admission))
        await asyncio.sleep(0)
        in_burst = await _call(admission)  # nothing frees the slot: runs out after BURST_S
        standing = await _call(admission)
        await asyncio.sleep(BURST_S * 1.5)
        recovered = await _call(admission)  # no wait ran out for BURST_S: a burst again
        app.release()
        await held
        return [in_burst, standing, recovered]

    in_burst, standing, recovered = asyncio.run(scenario())
    assert [r[0] for r in (in_burst, standing, recovered)] == [503, 503, 503]
    assert in_burst[2] >= BURST_S * 0.9
    # The standing queue's deadline, with room for a slow box (still well under the burst's).
    assert STANDING_S * 0.9 <= standing[2] < (STANDING_S + BURST_S) / 2
    assert recovered[2] >= BURST_S * 0.9


def test_a_request_that_leaves_the_queue_frees_its_place_and_hands_on_a_slot_it_was_given() -> None:
    async def scenario() -> None:
        app = Held()
        admission = _admission(app, limit=1)
        held = asyncio.create_task(_call(admission))
        await asyncio.sleep(0)
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
        await asyncio.sleep(0)
        app.release()
        status, _, _ = await after
        assert status == 200
        assert admission.in_flight == 0 and admission.queued == 0

        # Handed the slot, then cancelled before it ran: the slot goes to the next waiter.
        held = asyncio.create_task(_call(admission))
        await asyncio.sleep(0)
        handed = asyncio.create_task(_call(admission))
        next_one = asyncio.create_task(_call(admission))
        await asyncio.sleep(0)
        app.gates[-1].set()  # `held` finishes and hands its slot to `handed` ...
        handed.cancel()  # ... which is cancelled before it resumes
        await held
        with pytest.raises(asyncio.CancelledError):
            await handed
        await asyncio.sleep(0)
        app.release()
        status, _, _ = await next_one
        assert status == 200
        assert admission.in_flight == 0 and admission.queued == 0

    asyncio.run(scenario())
