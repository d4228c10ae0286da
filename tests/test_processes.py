"""Waiting for the stack's processes to stop (clickpulse/stack/processes.py), with real
processes; no stack needed."""

from __future__ import annotations

import subprocess
import time

import psutil
import pytest

from clickpulse.stack.processes import wait_exited

pytestmark = pytest.mark.no_stack


def test_an_exited_process_not_reaped_yet_counts_as_stopped_and_a_live_one_does_not() -> None:
    # Not waited for by its parent (this process, as PID 1 may not for a while): a zombie.
    done = subprocess.Popen(["sleep", "0"])
    live = subprocess.Popen(["sleep", "30"])
    try:
        zombie = psutil.Process(done.pid)
        while zombie.status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.01)
        started = time.monotonic()
        assert wait_exited([zombie], 10) == []
        assert time.monotonic() - started < 5  # not the whole timeout: it returned at once
        assert wait_exited([psutil.Process(live.pid)], 0.2) == [psutil.Process(live.pid)]
    finally:
        live.kill()
        live.wait()
        done.wait()
