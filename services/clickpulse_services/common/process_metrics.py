"""A process's CPU and memory (and its DB connections in use) as OpenTelemetry gauges, for a
service process and for its span relay alike."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from typing import Any

import psutil
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource


def process_resource(service_name: str, **extra: Any) -> Resource:
    return Resource.create(
        {
            "service.name": service_name,
            "service.namespace": "clickpulse",
            # Unique per process: with N workers per service (and replicas in compose, whose
            # pids repeat from one container to the next) each is its own instance.
            "service.instance.id": f"{service_name}-{socket.gethostname()}-{os.getpid()}",
            "process.pid": os.getpid(),
            **extra,
        }
    )


def exporting_meter_provider(
    endpoint: str, resource: Resource, interval_ms: int = 5000
) -> MeterProvider:
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=endpoint, insecure=True), export_interval_millis=interval_ms
    )
    return MeterProvider(resource=resource, metric_readers=[reader])


def observe_process(meter: Meter, pool_checked_out: Callable[[], int] | None = None) -> None:
    """Process CPU and memory, and open DB connections, as OTel gauges."""
    process = psutil.Process()
    process.cpu_percent(None)

    def cpu(_: CallbackOptions) -> Iterable[Observation]:
        yield Observation(process.cpu_percent(None) / 100.0)

    def memory(_: CallbackOptions) -> Iterable[Observation]:
        yield Observation(process.memory_info().rss)

    meter.create_observable_gauge(
        "process.cpu.utilization",
        [cpu],
        unit="1",
        description="CPU time of this process over the last interval, per core",
    )
    meter.create_observable_gauge(
        "process.memory.usage", [memory], unit="By", description="Resident set size"
    )
    if pool_checked_out is not None:
        checked_out = pool_checked_out

        def connections(_: CallbackOptions) -> Iterable[Observation]:
            yield Observation(checked_out(), {"db.client.connection.state": "used"})

        meter.create_observable_gauge(
            "db.client.connection.count",
            [connections],
            unit="{connection}",
            description="Database connections in use by this process",
        )


def process_meter_provider(endpoint: str, service_resource: Resource, role: str) -> MeterProvider:
    """A helper process's own gauges, under its service's name as an instance of its own."""
    name = str(service_resource.attributes["service.name"])
    interval = int(os.environ.get("CLICKPULSE_METRICS_INTERVAL_MS", "5000"))
    provider = exporting_meter_provider(
        endpoint, process_resource(name, **{"process.role": role}), interval
    )
    observe_process(provider.get_meter("clickpulse.services"))
    return provider
