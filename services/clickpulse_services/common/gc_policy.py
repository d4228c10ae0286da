"""The services' garbage-collector policy, applied once a process has started.

Almost everything a request allocates is freed by reference counting, yet CPython's default
policy (a young collection every 700 net new container objects) collected once every ~20
requests, and every few thousand requests ran a full collection that walked the whole startup
heap (the app, SQLAlchemy, the OpenTelemetry SDK): 85-138 ms each, during which the event loop
answered nothing. Measured with gc.callbacks in a CRUD API process serving ~30,000 requests of
`GET /products/{id}` (bench section 2's probes): ~1,500 young collections (290-375 ms), 5-9 full
ones (400-640 ms), together ~25 us of CPU a request, 5-7 % of it.

So what exists once the process has started is frozen (never walked again; it lives as long as
the process anyway), and a young collection waits for 20,000 net new objects. In the same runs
no collection at all ran under load; what requests leave in reference cycles is still
collected, later.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Collect, freeze what survives, and space out young collections."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
