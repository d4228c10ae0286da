"""Tasks: `nox -s up | down | status | logs -- NAME | reset | sql -- "SELECT ..." | load | report
| alerts | drills | bench | tests | lint`.

All sessions share one environment, `.venv`, built from pyproject.toml and rebuilt only when
that file changes: chdb alone is ~500 MB, so one copy per session would be wasteful.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".clickpulse-deps"
EXTRAS = ".[stack,services,load,report,test,lint]"

nox.options.default_venv_backend = "none"
nox.options.sessions = ["tests"]


def _deps_hash() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def _ensure_env(session: nox.Session) -> None:
    if STAMP.exists() and STAMP.read_text() == _deps_hash() and PY.exists():
        return
    uv = shutil.which("uv")
    # The installers' output is a log, never a session's result (`nox -s sql -- ... > f.tsv`).
    log = {"stdout": sys.stderr, "external": True}
    if uv:
        session.run(uv, "venv", "--allow-existing", "--python", sys.executable, str(VENV), **log)
        session.run(
            uv,
            "pip",
            "install",
            "--python",
            str(PY),
            "-e",
            EXTRAS,
            env={"VIRTUAL_ENV": str(VENV)},
            **log,
        )
    else:
        session.run(sys.executable, "-m", "venv", str(VENV), **log)
        session.run(str(PY), "-m", "pip", "install", "-q", "-e", EXTRAS, **log)
    STAMP.write_text(_deps_hash())


def _stack(session: nox.Session, *args: str) -> None:
    _ensure_env(session)
    session.run(str(PY), "-m", "clickpulse.stack", *args, external=True)


@nox.session
def up(session: nox.Session) -> None:
    """Start the whole local stack (or `-- --compose` for the containers)."""
    _stack(session, "up", *session.posargs)


@nox.session
def down(session: nox.Session) -> None:
    """Stop everything `up` started."""
    _stack(session, "down", *session.posargs)


@nox.session
def status(session: nox.Session) -> None:
    """Component, pid, address and health of each part of the stack."""
    _stack(session, "status", *session.posargs)


@nox.session
def logs(session: nox.Session) -> None:
    """Tail one component's log: `nox -s logs -- clickhouse [-f]`."""
    if not session.posargs:
        session.error("name a component: nox -s logs -- clickhouse|postgres|collector|monitor [-f]")
    _stack(session, "logs", *session.posargs)


@nox.session
def reset(session: nox.Session) -> None:
    """Stop the stack and wipe its data."""
    _stack(session, "reset")


@nox.session
def sql(session: nox.Session) -> None:
    """Query ClickHouse as the read-only analyst: `nox -s sql -- "SELECT ..."` (or `--file F`,
    `--format F`, `--param k=v`); with no query, an interactive shell."""
    _ensure_env(session)
    argv = [str(PY), "-m", "clickpulse.stack", "sql", *session.posargs]
    # Replace nox rather than run under it: nox joins the child's stderr to stdout (an error
    # would land in `> result.tsv`) and kills it 0.3 s after a Ctrl-C meant for a query.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


@nox.session
def load(session: nox.Session) -> None:
    """Play load/config.yaml with k6 against the running stack, then audit what landed:
    `nox -s load -- --rps 50 --duration 30s --config FILE`."""
    _ensure_env(session)
    session.run(str(PY), "-m", "clickpulse_load", *session.posargs, external=True)


@nox.session
def report(session: nox.Session) -> None:
    """The dashboards as one HTML page and a PNG each, without Grafana:
    `nox -s report -- --from now-6h --to now --out reports/`."""
    _ensure_env(session)
    session.run(str(PY), "-m", "clickpulse_grafana", "report", *session.posargs, external=True)


@nox.session
def drills(session: nox.Session) -> None:
    """Fault drills under load against the running stack: `nox -s drills -- [RPS]`."""
    _ensure_env(session)
    session.run(str(PY), "-m", "clickpulse_bench", "drills", *session.posargs, external=True)


@nox.session
def alerts(session: nox.Session) -> None:
    """Every alert rule evaluated now against ClickHouse: ok / pending / firing with its value
    (`-- --json` for a machine); exits 1 while an alert fires."""
    _ensure_env(session)
    session.run(str(PY), "-m", "clickpulse.monitoring", "alerts", *session.posargs, external=True)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks; results go to docs/benchmarks.md: `nox -s bench [-- --quick]`."""
    _ensure_env(session)
    session.run(str(PY), "-m", "clickpulse_bench", "bench", *session.posargs, external=True)


def _ensure_chromium(session: nox.Session) -> None:
    """The report test renders the report's page in Debian's chromium: installed here when this
    may install packages (root with apt-get), else the run stops now, not at that test."""
    if shutil.which("chromium"):
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        session.run("apt-get", "update", "-qq", external=True)
        session.run(
            "apt-get",
            "install",
            "-y",
            "-qq",
            "chromium",
            external=True,
            env={"DEBIAN_FRONTEND": "noninteractive"},
        )
        return
    session.error(
        "the report test needs Debian's chromium: run `sudo apt-get install chromium` "
        "(or leave that test out: nox -s tests -- --deselect tests/test_report.py)"
    )


@nox.session
def tests(session: nox.Session) -> None:
    """Start the stack (idempotent) and run the test suite against it."""
    files = [arg for arg in session.posargs if arg.startswith("tests/")]
    if not files or any("test_report" in arg for arg in files):
        _ensure_chromium(session)
    _stack(session, "up")
    session.run(str(PY), "-m", "pytest", *session.posargs, external=True)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (format and lint) and mypy --strict."""
    _ensure_env(session)
    session.run(str(PY), "-m", "ruff", "format", "--check", ".", external=True)
    session.run(str(PY), "-m", "ruff", "check", ".", external=True)
    session.run(str(PY), "-m", "mypy", external=True)
