"""Admission control: past its capacity a service process answers 503 fast, instead of queueing
requests for seconds.

At most `limit` requests run at once in a process. The next ones wait for a slot in a short
queue with a controlled delay, as in Facebook's "Fail at Scale" (Maurer, ACM Queue 2015): a
request may wait up to `BURST_WAIT_S` for a slot while the queue keeps emptying (a burst), but
only `STANDING_WAIT_S` once it has not been emptied by served requests for `INTERVAL_S`, or
while waits ran out within the last `STANDING_MEMORY_S` (a standing queue: the process is over
capacity; a queue emptied by waits running out does not count as emptied, or it would never look
standing). A standing queue holds at most `limit` requests, one for each slot to take the
moment it frees: the next ones are shed at once, not after a wait that would only delay their
503. A full queue, or a wait past its deadline, is a 503 with `Retry-After`. A request
asking for more urgency than the default (RFC 9218's `Priority: u=N`, N < 3: the shop's calls
to the CRUD API) waits ahead of the others, and a standing queue's cap does not apply to it (a
shed call costs the shop's whole request); the other limits stay.

Why a small limit and a queue, rather than the former 32 in flight and no queue: a process that
admits more requests than it needs to keep its CPU busy does not serve more, it serves each one
later. The mixed scenario on this box, configurations interleaved run by run (medians; single
runs vary a lot): at 650 req/s (~2x capacity), 8 in flight with the queue (a 5 ms standing
deadline then) against 32 without gave answered p95 ~95 ms against ~190 (6 runs each), shed p99
~210 ms against ~345, goodput ~600 against ~587 req/s. 8 in flight with no queue shed 6 % at
450 req/s in the one run tried (arrival bursts of sessions), and 4 in flight lost goodput (517
req/s at 650).

Why a burst may wait 150 ms and the queue must stay non-empty 500 ms to count as standing, while
a standing queue's wait stays 20 ms: on this box a service process is at times descheduled, not
only busy. At 1,000 req/s of the mixed scenario the 2 cores are ~70 % busy (CRUD API 40 %
of a core, shop 37 %, k6 37 %, PostgreSQL 13 %, ClickHouse 7 % in bursts of 20-60 %), and the
CRUD API stops for 15-60 ms at a time, in clusters of 100-200 ms: a watchdog thread in the process
found the loop's heartbeat stale and itself not run meanwhile, while an idle probe process and
PostgreSQL answered within 10 ms, and the requests arrived evenly (~9 every 10 ms). With waits of
30 ms over a 100 ms interval, each such cluster shed a few dozen requests: 0.34-0.72 % of them at
1,000 req/s (3 runs). With 150 ms over 500 ms, 0, 0.01 and 0 % (3 runs interleaved with those), p95
14-17 ms either way; 0.05 % at 1,100 req/s. Past capacity the queue never empties, so after
500 ms it stands and waits are 20 ms again: at 1,750 req/s, 2 runs each, goodput 1,309 and 1,461
req/s against 1,351 and 1,246, shed p99 at the client 132 and 159 ms against 118 and 200,
answered p99 161 and 142 ms against 101 and 109. Before that (waits of 30/20 ms over 100 ms):
issue 11 asks for shed answers within 50 ms, and a burst wait of 100 ms is a shed answer of
100 ms; at 400 req/s (then about capacity) 30/20 ms shed 0.53 % of requests, 30/5 ms 0.24 %,
100/20 ms 0.36 %; at 776 req/s (then 2x) 30/5 ms gave shed p99 208 ms at the client against 245
for 100/20. The standing wait stays 20 ms: 10 clients in a closed loop on `GET /orders` (~1 ms of
CPU each, p50 ~10 ms) at one process keep a queue of 2 standing, and got 503s with either wait,
when the event loop stalled (p99 ~100 ms): with 5 ms, every one of 6 runs of 15 s got one, 9 in
the one run that counted them; with 20 ms, 0-17 in 5 runs. A client holding far more connections
open to one process than its limit gets 503s (the overhead bench's processes run with a higher
limit).

Why a standing queue holds only `limit` requests and stays standing `STANDING_MEMORY_S` (2 s)
after a wait ran out, not `INTERVAL_S`: past capacity, every request the queue held beyond what
the slots take within the deadline waited its 20 ms (more on a busy loop, whose timers fire
late) for a 503; and the shop's queue, whose slots free in waves as the CRUD API answers its
calls, kept emptying and counting as a burst again, so its sheds waited the burst's 150 ms
(13 % of them over 100 ms, all through a 30 s run at 2x). Runs at 1,600 req/s (about 2x this
slower machine's capacity, 2026-12-02), 30 s each, services restarted and warmed up before
each, interleaved: the 503s' own spans took p99 50-75 ms (8 runs) against 152-182 (5 runs as
before) and 154-166 with the cap alone (2 runs, 500 ms memory), nearly all of them now shed at
once (0.2 ms); at the client the shed p99 was 261-578 ms (median 419) against 440-626 (505),
the goodput 401-639 req/s (median 524) against 405-700 (546): the box, not the queue, sets
those two, and the machine slowed down through the runs. A cap of half the slots (3 runs
interleaved with 3 of this one): spans p99 31-66 ms against 60-93, but goodput 549-594 req/s
against 655-824 (slots went idle). At about capacity (400 req/s, 3 runs each) the shed share
was 0, 0.13 and 0 % against 0, 0 and 6.4 %; at 500 req/s (past it) 0.8-2.3 % against 0.5-6.7 %.
Near capacity the cap does not shed more: at 600 req/s on a machine whose capacity bench found
575 (2026-12-02 14:03, 4 runs of 30 s each, interleaved), 0, 0, 0.61 and 0.59 % shed with it
against 0, 0.90, 0.88 and 0 % with a cap of 32 slots' worth (none, in effect).
What the client waits beyond the span is k6's and the kernel's: with the box ~95 % busy at 2x
(CRUD API 0.64 of a core, k6 0.45, shop 0.35, PostgreSQL 0.18, ClickHouse 0.12), a
`GET /health` probe at niceness -15 took p50 13 ms and p99 82 ms to the CRUD API (2 ms idle), 9
and 119 ms to the shop; k6 at niceness -10 (all its threads) cut the client's shed p99 to
275-336 ms against 297-464 in runs beside it.

Why up to 256 requests may wait, not 64: the waits bound how long a request waits; the queue's
length only bounds what a burst may leave waiting at once. At 1,000 req/s of the mixed scenario
(a CPU-cheap shop, the CRUD API the busiest process at ~48 % of a core), nearly every request
shed at the capacity bench's probes of 925-1,000 req/s was the CRUD API's `queue_full`, answered
in under 1 ms: more than 72 requests arriving within the time the process serves a few (a stall
of the process or of k6, then its catch-up). Interleaved 30 s runs at 1,000 req/s: with 64, 23,
1,046 and 132 shed; with 256, 0, 0 and 0. At 1,900 req/s (2 runs each) the goodput and the shed
p99 at the client were within the spread (1,284 and 1,366 against 1,280 and 1,527 req/s; 171
and 165 ms against 175 and 153): past capacity the queue stands and its waits, not its length,
decide.

The urgent calls, at 776 req/s with 100/20 ms waits both: shed p99 at the client 245 ms against
313 without (3 runs each); in the spans, the shop's 503s caused by a shed call were ~520 a run
without them (30 ms waits) and ~165 with them (30/5 ms), the slowest kind of shed answer (p99
200-330 ms).

Why a wait is not cut short by an estimate of the queue ahead (tried before the standing
queue's cap: shed at once when waiters ahead x the mean time a slot is held / `limit` passes the
deadline; not kept; the cap is a simpler bound, and came with the longer standing memory,
without which it did not help): at 800 req/s, 9 pairs of runs interleaved with the code as it
was, the shed answers' spans took p50 0.1 ms against 26 and p99 57-65 ms against 72-100, but at
the client the shed p99 was no better (median 164 against 145 ms; runs 103-248 against 115-166)
nor the goodput (median 565 against 594 req/s); at 400-425 req/s the errors were within the
spread. Shedding at half the deadline got the spans' p99 to 45-54 ms and lost a fifth of the
goodput (2 runs). At overload on this box the client's wait is k6's and the kernel's, not the
queue's.

The middleware sits inside the server-span middleware: a shed request is a span like any other
(status 503, its route, and `app.shed.reason`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from time import monotonic

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseStartEvent, HTTPScope, Receive, Scope, Send
from opentelemetry import trace

# Never shed: the stack's health checks must see a busy process as alive.
EXEMPT_PATHS = frozenset(("/health",))
RETRY_AFTER_S = 1
# The controlled delay (see the module's docstring): how long the queue must stay non-empty to
# count as standing (Fail at Scale's interval), and how long a request may wait for a slot
# during a burst (long enough to ride out the process being descheduled for a moment) and once
# the queue is standing. A wait that runs out at 2x capacity took p99 ~85-160 ms in its span
# all the same (timers fire late on a busy event loop): most sheds there now wait for nothing.
INTERVAL_S = 0.5
BURST_WAIT_S = 0.15
STANDING_WAIT_S = 0.02
# How long the queue still counts as standing after a wait ran out: past capacity the queue
# empties now and then between waves of answers, and each time looked like a burst again.
STANDING_MEMORY_S = 2.0
# A wait's timer this late means the loop stalled (a long callback, a garbage collection): the
# wait gets one more look once the requests answered during the stall have resumed (`_expire`).
LATE_S = 0.01
SHED_REASON = "app.shed.reason"
# RFC 9218 (Extensible Prioritization Scheme for HTTP): urgency 0-7, 3 when not said.
DEFAULT_URGENCY = 3


def shed_response(detail: str) -> tuple[HTTPResponseStartEvent, bytes]:
    """The start message and body of a 503 that tells the client when to come back."""
    body = msgspec.json.encode({"status_code": 503, "detail": detail})
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 503,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(RETRY_AFTER_S).encode()),
        ],
    }
    return start, body


class Admission:
    """At most `limit` requests in flight in this process, at most `max_queued` waiting for a
    slot (see the module's docstring); the others get 503 + Retry-After.

    `route_of(path, method)` names the route of a shed request (for its span), without running
    the request."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        route_of: Callable[[str, str], str | None],
        max_queued: int = 256,
    ) -> None:
        self.app = app
        self.limit = limit
        self.max_queued = max_queued
        self.in_flight = 0
        # Waiters in arrival order, urgent ones apart (served first); expired ones stay until
        # they reach the head.
        self.urgent: deque[asyncio.Future[bool]] = deque()
        self.waiters: deque[asyncio.Future[bool]] = deque()
        self.queued = 0
        # When served requests last emptied the queue, and when a wait last ran out.
        self.empty_at = monotonic()
        self.expired_at = -STANDING_MEMORY_S
        self.route_of = route_of
        self.shed = {
            reason: shed_response(f"over capacity: {detail}; retry after {RETRY_AFTER_S} s")
            for reason, detail in (
                ("queue_full", f"{limit} requests in flight and {max_queued} waiting"),
                ("queue_standing", f"{limit} requests in flight and as many waiting"),
                ("queue_timeout", f"no slot free in time ({limit} requests in flight)"),
            )
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight < self.limit:
            self.in_flight += 1
        elif reason := await self._wait_for_slot(_urgent(scope)):
            await self._answer_shed(reason, scope, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._release()

    async def _wait_for_slot(self, urgent: bool) -> str | None:
        """None once this request holds a slot (handed over by `_release`), else why not."""
        if self.queued >= self.max_queued:
            return "queue_full"
        now = monotonic()
        standing = now - self.expired_at < STANDING_MEMORY_S
        if not self.queued and not standing:
            self.empty_at = now
        standing = standing or now - self.empty_at > INTERVAL_S
        if standing and not urgent and self.queued >= self.limit:
            return "queue_standing"
        deadline = STANDING_WAIT_S if standing else BURST_WAIT_S
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        timer = loop.call_later(deadline, self._expire, waiter, now + deadline)
        (self.urgent if urgent else self.waiters).append(waiter)
        self.queued += 1
        try:
            admitted = await waiter
        except asyncio.CancelledError:
            timer.cancel()
            if waiter.cancelled():
                self._left_queue()
            elif waiter.result():
                self._release()  # handed a slot it will not use
            raise
        timer.cancel()
        return None if admitted else "queue_timeout"

    def _expire(self, waiter: asyncio.Future[bool], due: float | None) -> None:
        if waiter.done():
            return
        if due is not None and monotonic() - due > LATE_S:
            # The event loop stalled past this deadline. Requests in flight may have been
            # answered meanwhile (their database answers read) but not resumed yet: a task
            # resumes in a later callback than the one that read its answer, so the wait would
            # run out ahead of the slots they are about to free (checked on uvloop and asyncio:
            # after a stall, the read, then the due timer, then the task). Look once more after
            # those callbacks ran (a timer a little ahead runs after the callbacks ready now).
            asyncio.get_running_loop().call_later(LATE_S / 10, self._expire, waiter, None)
            return
        waiter.set_result(False)
        self.queued -= 1
        self.expired_at = monotonic()

    def _left_queue(self) -> None:
        self.queued -= 1
        if not self.queued:
            self.empty_at = monotonic()

    def _release(self) -> None:
        """Hands this request's slot to the oldest live waiter, or frees it."""
        for waiters in (self.urgent, self.waiters):
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(True)
                    self._left_queue()
                    return
        self.in_flight -= 1

    async def _answer_shed(self, reason: str, scope: HTTPScope, send: Send) -> None:
        if template := self.route_of(scope["path"], scope["method"]):
            scope["path_template"] = template
        trace.get_current_span().set_attribute(SHED_REASON, reason)
        start, body = self.shed[reason]
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})


def _urgent(scope: HTTPScope) -> bool:
    """Whether the request asks for an urgency above the default (RFC 9218's `Priority: u=N`,
    0 the most urgent, 3 the default): it then waits ahead of the others."""
    for name, value in scope["headers"]:
        if name == b"priority":
            for member in value.split(b","):
                key, _, urgency = member.strip().partition(b"=")
                if key == b"u" and urgency.isdigit():
                    return int(urgency) < DEFAULT_URGENCY
    return False
