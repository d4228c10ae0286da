"""A steady k6 load in the background, tagged with its own run id, for drills and benchmarks."""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clickpulse_load.config import load_config
from clickpulse_load.plan import build_plan, seed
from clickpulse_load.runner import K6Result, run_k6


@dataclass
class SteadyLoad:
    rps: float
    duration_s: int
    run_id: str = field(default_factory=lambda: f"drill-{uuid.uuid4().hex[:10]}")
    result: K6Result | None = None
    plan: dict[str, Any] = field(default_factory=dict)
    _thread: threading.Thread | None = None
    started_at: float = 0.0

    def start(self) -> SteadyLoad:
        config = load_config()
        config.simulation.requests_per_second = self.rps
        config.simulation.duration = f"{self.duration_s}s"
        config.simulation.ramp_up = "0s"
        users, products = seed(config)
        self.plan = build_plan(config, run_id=self.run_id, users=users, product_ids=products)
        # Faults make requests slow: thresholds must not end the run early.
        self.plan["thresholds"] = {}

        def play() -> None:
            with tempfile.TemporaryDirectory(prefix="clickpulse-drill-") as tmp:
                self.result = run_k6(self.plan, Path(tmp), quiet=True)

        self._thread = threading.Thread(target=play, name=self.run_id, daemon=True)
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def wait(self) -> K6Result:
        assert self._thread is not None
        self._thread.join()
        assert self.result is not None
        return self.result

    def _count(self, metric: str) -> int:
        metrics = (self.result.summary if self.result else {}).get("metrics", {})
        return int(metrics.get(metric, {}).get("values", {}).get("count", 0))

    def sent(self) -> int:
        return self._count("clickpulse_sent")

    def abandoned(self) -> int:
        """Requests k6 gave up on: the server may still have answered (and traced) them."""
        return self._count("clickpulse_abandoned")
