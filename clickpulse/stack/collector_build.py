"""Builds the official OpenTelemetry Collector from otel-collector/builder-config.yaml with the
OpenTelemetry Collector Builder (ocb), once per manifest: the binary is cached under the state
folder by the manifest's hash, so editing the manifest triggers exactly one rebuild."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from rich.console import Console

from clickpulse.stack.processes import StackError
from clickpulse.stack.settings import REPO_ROOT, Settings

MANIFEST = REPO_ROOT / "otel-collector" / "builder-config.yaml"
CONFIG = REPO_ROOT / "otel-collector" / "config.yaml"
BUILDER_MODULE = "go.opentelemetry.io/collector/cmd/builder@v0.165.0"
BINARY_NAME = "clickpulse-otelcol"
# The Go runtime's garbage collector, as compose.yaml sets it too. With Go's default (GOGC=100)
# the collector spent 50-53 us of CPU per span at 2,000 spans/s; with 400, 30-35 us (interleaved
# runs of the same OTLP batches), on the two cores the services and ClickHouse share. The heap
# may grow to 5x what is live (RSS peaked at ~510 MiB at 30,000 spans/s, bench section 1);
# GOMEMLIMIT makes the collector collect harder before the memory_limiter's soft limit
# (768 MiB) refuses data.
GO_RUNTIME_ENV = {"GOGC": "400", "GOMEMLIMIT": "700MiB"}


def manifest_hash() -> str:
    return hashlib.sha256(MANIFEST.read_bytes()).hexdigest()[:16]


def config_hash() -> str:
    return hashlib.sha256(CONFIG.read_bytes()).hexdigest()[:16]


def binary_path(settings: Settings) -> Path:
    return settings.cache_dir / f"collector-{manifest_hash()}" / BINARY_NAME


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise StackError(
            "the local stack builds the official OpenTelemetry Collector from source and needs "
            "a Go toolchain (1.25 or newer) on PATH: install Go, or run the containers instead "
            "with `nox -s up -- --compose`."
        )
    return go


def _run_with_progress(argv: list[str], *, env: dict[str, str], log: Path, what: str) -> None:
    console = Console(stderr=True)
    started = time.monotonic()
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        with console.status(f"{what} (takes a few minutes the first time)") as status:
            while proc.poll() is None:
                last = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
                status.update(
                    f"{what}: {time.monotonic() - started:4.0f}s  [dim]{last[0][-90:]}[/dim]"
                )
                time.sleep(1)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise StackError(f"{what} failed (exit {proc.returncode}); see {log}:\n{tail}")
    console.print(f"{what}: done in {time.monotonic() - started:.0f}s")


def ensure_collector(settings: Settings) -> Path:
    binary = binary_path(settings)
    if binary.exists():
        return binary
    go = _go()
    tools = settings.cache_dir / "tools"
    build_dir = binary.parent
    build_dir.mkdir(parents=True, exist_ok=True)
    log = settings.cache_dir / "collector-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(tools), "CGO_ENABLED": "0"}
    builder = tools / "builder"
    if not builder.exists():
        _run_with_progress([go, "install", BUILDER_MODULE], env=env, log=log, what="installing ocb")
    _run_with_progress(
        [str(builder), "--config", str(MANIFEST), "--output-path", str(build_dir)],
        env=env,
        log=log,
        what="building the OpenTelemetry Collector",
    )
    if not binary.exists():
        raise StackError(f"the collector build finished but {binary} is missing; see {log}")
    return binary
