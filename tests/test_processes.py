"""Waiting for the stack's processes to stop (clickpulse/stack/processes.py), with real
processes; no stack needed."""

from __future__ import annotations

import platform
import subprocess
import sys
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


# The exit syscall's number on x86_64 (these machines).
@pytest.mark.skipif(platform.machine() != "x86_64", reason="SYS_exit is 60 on x86_64 only")
def test_a_process_whose_main_thread_exited_before_its_others_is_still_running() -> None:
    # The main thread leaves alone (the exit syscall, not exit_group): it shows as a zombie
    # while the other thread, which shares the process's files and ports, runs 3 s more.
    code = (
        "import ctypes, threading, time;"
        " threading.Thread(target=time.sleep, args=(3,)).start();"
        " ctypes.CDLL(None).syscall(60, 0)"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        proc = psutil.Process(child.pid)
        while proc.status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.01)
        assert wait_exited([proc], 0.5) == [proc]
        assert wait_exited([proc], 30) == []
    finally:
        child.wait()
