"""The services' garbage-collector policy (common/gc_policy.py), in this process."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from clickpulse_services.common.gc_policy import YOUNG_THRESHOLD, settle_heap

pytestmark = pytest.mark.no_stack


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_what_lives_at_startup_is_frozen_and_young_collections_wait_longer() -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    settle_heap()
    assert gc.get_freeze_count() > 0  # in the permanent generation: never walked again
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD


@pytest.mark.usefixtures("restored_gc")
def test_reference_cycles_made_after_startup_are_still_collected_on_their_own() -> None:
    settle_heap()

    class Node:
        other: Node

    first = Node()
    first.other = first
    gone = weakref.ref(first)
    del first
    assert gone() is not None  # a cycle: reference counting cannot free it
    for _ in range(YOUNG_THRESHOLD):  # enough new objects for a young collection
        node = Node()
        node.other = node
    del node
    assert gone() is None


def test_what_a_process_keeps_per_caller_and_per_token_is_no_work_for_the_collector() -> None:
    """A rate-limit window per caller address and a remembered principal per token pile up
    under load (one of each per session of the load scenario): once the collector has seen
    them, nothing of them is left for it to walk again, so they cannot make collections."""
    from clickpulse_services.common.rate_limits import Limit
    from clickpulse_services.common.tokens import Principal

    limit = Limit("600/minute")
    windows = [limit.take(f"10.1.0.{n}", 1_000.0) for n in range(100)]
    remembered = [(Principal(id=n, roles=("admin",)), 1_000.0, 1) for n in range(100)]
    gc.collect()
    assert not any(gc.is_tracked(window) for window in windows)
    assert not any(gc.is_tracked(entry) or gc.is_tracked(entry[0]) for entry in remembered)
    assert limit.take("10.1.0.7", 1_000.5).count == 2  # still counting
