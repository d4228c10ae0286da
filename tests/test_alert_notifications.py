"""Notifications: the monitor's transitions recorded as JSON lines and posted, in Grafana's
webhook payload, to the local contact point (`python -m clickpulse.monitoring receive`), which
prints them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from clickpulse.monitoring.evaluation import Transition
from clickpulse.monitoring.notifications import notify, read_transitions
from clickpulse.stack.processes import free_port
from clickpulse.stack.settings import REPO_ROOT

pytestmark = pytest.mark.no_stack


def _transition(before: str, after: str, at: float) -> Transition:
    return Transition(
        at=at,
        uid="clickpulse-5xx-share",
        title="Server errors (5xx share)",
        labels=(("service", "crud-api"),),
        before=before,  # type: ignore[arg-type]
        after=after,  # type: ignore[arg-type]
        value=0.5 if after != "ok" else 0.0,
        error=None,
    )


def test_firing_and_resolved_reach_the_local_webhook_receiver(tmp_path: Path) -> None:
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "clickpulse.monitoring", "receive", "--port", str(port)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        assert f"listening on http://127.0.0.1:{port}/" in receiver.stdout.readline()
        url = f"http://127.0.0.1:{port}/"
        now = time.time()
        lines = notify(tmp_path, url, [_transition("ok", "pending", now)])
        lines += notify(tmp_path, url, [_transition("pending", "firing", now + 30)])
        lines += notify(tmp_path, url, [_transition("firing", "ok", now + 90)])
        assert not any("failed" in line for line in lines), lines
        assert lines[1] == "Server errors (5xx share) [service=crud-api]: pending -> firing (50.0%)"
        printed = [receiver.stdout.readline().strip() for _ in range(4)]
    finally:
        receiver.terminate()
        receiver.wait(10)
    # Pending does not notify: the receiver saw the firing and the resolution only.
    assert printed[0].endswith("[FIRING:1] Server errors (5xx share)")
    assert printed[1].startswith("firing: Server errors (5xx share)")
    assert "'service': 'crud-api'" in printed[1] and "value=50.0%" in printed[1]
    assert printed[2].endswith("[RESOLVED:1] Server errors (5xx share)")
    assert printed[3].startswith("resolved: Server errors (5xx share)")
    recorded = read_transitions(tmp_path)
    assert [(e["from"], e["to"]) for e in recorded] == [
        ("ok", "pending"),
        ("pending", "firing"),
        ("firing", "ok"),
    ]
    assert read_transitions(tmp_path, since_epoch=now + 60)[0]["to"] == "ok"


def test_an_unreachable_webhook_is_a_log_line_not_a_crash(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    lines = notify(tmp_path, url, [_transition("pending", "firing", time.time())])
    assert lines[-1].startswith(f"webhook {url} failed")
    assert len(read_transitions(tmp_path)) == 1
