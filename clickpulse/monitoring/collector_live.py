"""The collector's own metrics, read live from its Prometheus endpoint.

The same metrics reach ClickHouse every 10 s through the collector itself; while ClickHouse is
away they wait in the very queue they describe. So the monitor and `nox -s status` read the
sending queue here: its size, and the rate it is filled at (two readings apart)."""

from __future__ import annotations

import re
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

import httpx

from clickpulse.monitoring.evaluation import Labels
from clickpulse.monitoring.rules import MIN_BACKLOG_ITEMS

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
# The receiver's counters per signal, and the signal's name on the queue's gauge.
ACCEPTED = {
    "traces": "otelcol_receiver_accepted_spans_total",
    "metrics": "otelcol_receiver_accepted_metric_points_total",
    "logs": "otelcol_receiver_accepted_log_records_total",
}
MIN_RATE_WINDOW_S = 2.0


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Scrape:
    at: float
    samples: list[Sample] = field(default_factory=list)

    def total(self, name: str, **match: str) -> float:
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in match.items())
        )

    def by_label(self, name: str, label: str) -> dict[str, float]:
        values: dict[str, float] = defaultdict(float)
        for s in self.samples:
            if s.name == name:
                values[s.labels.get(label, "")] += s.value
        return dict(values)


def parse(text: str, at: float) -> Scrape:
    samples = []
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        name, raw_labels, raw_value = match.groups()
        try:
            value = float(raw_value)
        except ValueError:
            continue
        labels = dict(_LABEL.findall(raw_labels or ""))
        samples.append(Sample(name, labels, value))
    return Scrape(at, samples)


class CollectorLive:
    """Keeps the readings of the last `window_s` seconds: a rate is taken over that window,
    as the SQL does over its own (items arrive in bursts: a rate over milliseconds is noise)."""

    def __init__(self, url: str, *, timeout_s: float = 2.0, window_s: float = 45.0) -> None:
        self.url = url
        self.window_s = window_s
        self.history: deque[Scrape] = deque()
        # One client for the process: httpx.get() builds a client (and its SSL context) per
        # call, which was most of the monitor's CPU at a reading every 10 s.
        self.client = httpx.Client(timeout=timeout_s)

    def scrape(self) -> Scrape:
        response = self.client.get(self.url)
        response.raise_for_status()
        scrape = parse(response.text, time.time())
        self.history.append(scrape)
        while self.history and scrape.at - self.history[0].at > self.window_s:
            self.history.popleft()
        return scrape

    def latest_scrape(self) -> Scrape:
        return self.history[-1] if self.history else self.scrape()

    def queue_items(self) -> dict[str, float]:
        """Items waiting in the exporter's sending queue, per signal (traces, metrics, logs)."""
        return self.scrape().by_label("otelcol_exporter_queue_size", "data_type")

    def queue_backlog_s(self) -> dict[Labels, float]:
        """Seconds of data in the sending queue per signal: its size over the rate the receiver
        accepted items in the window (the SQL of clickpulse-collector-backlog)."""
        scrape = self.scrape()
        if scrape.at - self.history[0].at < MIN_RATE_WINDOW_S:
            # A first reading: wait for a second one to measure a rate.
            time.sleep(MIN_RATE_WINDOW_S)
            scrape = self.scrape()
        oldest = self.history[0]
        elapsed = scrape.at - oldest.at
        backlog: dict[Labels, float] = {}
        for signal, queued in scrape.by_label("otelcol_exporter_queue_size", "data_type").items():
            metric = ACCEPTED.get(signal)
            if metric is None:
                continue
            rate = max(scrape.total(metric) - oldest.total(metric), 0.0) / elapsed
            backlog[(("signal", signal),)] = (
                0.0 if queued < MIN_BACKLOG_ITEMS else queued / max(rate, 0.001)
            )
        return backlog

    def read(self, source: str) -> dict[Labels, float]:
        if source == "collector_queue_backlog":
            return self.queue_backlog_s()
        raise ValueError(f"unknown live source {source!r}")
