"""The monitor: the stack's process that watches the stack (`nox -s up` runs it last).

Every 15 s it samples PostgreSQL's statistics views and sends them as OTel metrics through the
collector (postgres_stats); every group's interval it evaluates that group's alert rules
against ClickHouse (evaluation), saves their states (`<state>/monitor/alerts.json`, which
`nox -s alerts` and `nox -s status` start from), appends every change to
`<state>/monitor/alert-events.jsonl` and posts firing and resolved alerts to
CLICKPULSE_ALERT_WEBHOOK_URL when set. Its own CPU and memory, and each alert's state
(`clickpulse.alert.state`: 0 ok, 1 pending, 2 firing), go out as metrics too.

One asyncio loop; the blocking work (ClickHouse queries, the OTLP export) runs in a worker
thread one piece at a time, so an evaluation never overlaps another."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterable

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider

from clickpulse.monitoring import heartbeat
from clickpulse.monitoring.clickhouse_query import ClickHouseQuery
from clickpulse.monitoring.collector_live import CollectorLive
from clickpulse.monitoring.evaluation import Evaluator, Transition
from clickpulse.monitoring.notifications import STATE_FILE, notify
from clickpulse.monitoring.postgres_stats import PostgresSample, PostgresSampler
from clickpulse.monitoring.rules import GROUPS, RULES, Group, Rule
from clickpulse.stack.processes import stack_up_since
from clickpulse.stack.settings import Settings

SERVICE_NAME = "clickpulse-monitor"
POSTGRES_INTERVAL_S = 15.0
STATE_CODES = {"ok": 0, "pending": 1, "firing": 2}

log = logging.getLogger("clickpulse.monitor")


def meter_provider(settings: Settings) -> MeterProvider:
    from clickpulse_services.common.process_metrics import (
        exporting_meter_provider,
        observe_process,
        process_resource,
    )

    # Exported right after each PostgreSQL sample (force_flush), not on a timer of its own: a
    # sample reaches ClickHouse ~1 s after it is taken. The timer is only a backstop.
    provider = exporting_meter_provider(
        settings.monitor_otlp_endpoint,
        process_resource(SERVICE_NAME),
        interval_ms=60_000,
    )
    observe_process(provider.get_meter("clickpulse.monitor.process"))
    return provider


class Monitor:
    def __init__(self, settings: Settings, *, webhook_url: str | None = None) -> None:
        self.settings = settings
        self.directory = settings.monitor_dir
        self.webhook_url = webhook_url
        self.collector = CollectorLive(settings.collector_metrics_url)
        # Breaches are not replayed from before the stack came up (under compose: before this
        # process started, as it starts with the stack).
        self.evaluator = Evaluator(
            ClickHouseQuery(settings),
            live=self.collector.read,
            not_before=stack_up_since(settings.run_dir) or time.time(),
        )
        self.evaluator.load(self.directory / STATE_FILE)
        self.postgres = PostgresSampler(settings.pg_monitor_dsn)
        self.provider = meter_provider(settings)
        self._observe(self.provider)
        self.stopping = asyncio.Event()
        # The export thread reads the alert states while the evaluation thread writes them.
        self.lock = threading.Lock()

    # --- metrics ------------------------------------------------------------------------------
    def _observe(self, provider: MeterProvider) -> None:
        meter = provider.get_meter("clickpulse.monitor")

        def pg(_: CallbackOptions) -> Iterable[Observation]:
            yield Observation(1 if self.postgres.latest.up else 0)

        def backends(_: CallbackOptions) -> Iterable[Observation]:
            for state, count in self.postgres.latest.sessions.items():
                yield Observation(count, {"state": state})

        def field(name: str) -> object:
            def callback(_: CallbackOptions) -> Iterable[Observation]:
                sample: PostgresSample = self.postgres.latest
                if sample.up:
                    yield Observation(getattr(sample, name))

            return callback

        def alert_states(_: CallbackOptions) -> Iterable[Observation]:
            with self.lock:
                states = [
                    (uid, instance.labels, instance.state)
                    for uid, status in self.evaluator.status.items()
                    for instance in status.instances.values()
                ]
            for uid, labels, state in states:
                yield Observation(
                    STATE_CODES[state],
                    {"alert.rule": uid, "alert.instance": ",".join(f"{k}={v}" for k, v in labels)},
                )

        meter.create_observable_gauge("postgresql.up", [pg], unit="1")
        meter.create_observable_gauge("postgresql.backends", [backends], unit="{session}")
        for name, attribute, unit in (
            ("postgresql.connection.max", "max_connections", "{connection}"),
            ("postgresql.transaction.oldest.duration", "oldest_transaction_s", "s"),
            ("postgresql.locks.waiting", "lock_waits", "{session}"),
            ("postgresql.locks.held", "locks_held", "{lock}"),
            ("postgresql.deadlocks", "deadlocks", "{deadlock}"),
        ):
            meter.create_observable_gauge(name, [field(attribute)], unit=unit)  # type: ignore[list-item]
        meter.create_observable_gauge(
            "clickpulse.alert.state",
            [alert_states],
            unit="1",
            description="0 ok, 1 pending, 2 firing, per alert rule and instance",
        )

    # --- loops --------------------------------------------------------------------------------
    def heartbeat(self) -> None:
        heartbeat.beat(self.directory)

    async def sample_postgres(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            sample = await self.postgres.sample()
            if not sample.up:
                log.warning("PostgreSQL sample failed: %s", sample.error)
            try:
                await asyncio.to_thread(self.provider.force_flush, 10_000)
            except Exception as exc:
                log.warning("metrics export failed: %s", exc)
            await self._sleep(POSTGRES_INTERVAL_S - (time.monotonic() - started))

    async def evaluate_rules(self) -> None:
        due = dict.fromkeys(GROUPS, time.monotonic())
        while not self.stopping.is_set():
            group: Group = min(due, key=lambda g: due[g])
            await self._sleep(due[group] - time.monotonic())
            if self.stopping.is_set():
                break
            due[group] = time.monotonic() + group.interval_s
            rules = [r for r in RULES if r.group == group]
            if any(r.live for r in rules):
                # A reading every round, so the live fallback has a rate over its window.
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.collector.scrape)
            transitions = await asyncio.to_thread(self._evaluate, rules)
            self.heartbeat()
            if transitions:
                self.record(transitions)

    def _evaluate(self, rules: list[Rule]) -> list[Transition]:
        with self.lock:
            transitions = self.evaluator.evaluate(rules)
            self.evaluator.save(self.directory / STATE_FILE)
        return transitions

    def record(self, transitions: list[Transition]) -> None:
        for line in notify(self.directory, self.webhook_url, transitions):
            log.warning("%s", line)

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), seconds)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        self.heartbeat()
        log.warning(
            "monitoring: %d rules, PostgreSQL every %.0f s", len(RULES), POSTGRES_INTERVAL_S
        )
        try:
            await asyncio.gather(self.sample_postgres(), self.evaluate_rules())
        finally:
            await self.postgres.close()
            with self.lock:
                self.evaluator.save(self.directory / STATE_FILE)
            self.provider.shutdown()
            log.warning("monitor stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m clickpulse.monitoring monitor")
    parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.WARNING)
    # While ClickHouse is away every query logs urllib3's retry and the driver's exception: the
    # alert says it once, with the reason.
    for noisy in ("urllib3", "clickhouse_connect"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    settings = Settings.from_env()
    asyncio.run(Monitor(settings, webhook_url=settings.alert_webhook_url).run())
