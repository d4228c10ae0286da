"""Service processes the benchmarks start beside the stack's: extra uvicorn processes of this
checkout or of an older commit (a git worktree), and the stack's own services restarted with
another number of worker processes."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from clickpulse.stack.components import all_components, uvicorn_argv
from clickpulse.stack.settings import REPO_ROOT, Settings

SERVICE_NAMES = ("crud-api", "ecommerce-api")
CRUD_APP = "clickpulse_services.crud.app:app"
SHOP_APP = "clickpulse_services.shop.app:app"


@dataclass(frozen=True)
class Checkout:
    """Where a version of the services is imported from, and how its stack served it."""

    label: str
    root: Path
    # uvicorn options after the address, for a tree whose stack served it otherwise than ours.
    server_options: tuple[str, ...] = ()

    @property
    def slug(self) -> str:
        return re.sub(r"\W+", "-", self.label).strip("-")

    @property
    def current(self) -> bool:
        return self.root.resolve() == REPO_ROOT.resolve()

    def env(self) -> dict[str, str]:
        # PYTHONPATH comes before the editable install's .pth entries on sys.path, so
        # `clickpulse_services` is imported from this tree; the cwd (first on sys.path with
        # `-m`) does the same for `clickpulse`.
        return {} if self.current else {"PYTHONPATH": str(self.root / "services")}

    def cwd(self) -> Path | None:
        return None if self.current else self.root

    def uvicorn_argv(self, app: str, host: str, port: int) -> list[str]:
        """One process (no worker supervisor, so its CPU is its own), as the stack runs it."""
        if self.current:
            return uvicorn_argv(app, host, port, 1)
        return [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            host,
            "--port",
            str(port),
            *self.server_options,
        ]


CURRENT = Checkout("current", REPO_ROOT)


def short_head() -> str:
    """This checkout's commit, marked when services/ or the stack have uncommitted changes."""
    sha = _git("rev-parse", "--short", "HEAD").strip()
    dirty = _git("status", "--porcelain", "--", "services", "clickpulse/stack").strip()
    return sha + ("+changes" if dirty else "")


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=True
    ).stdout


@contextlib.contextmanager
def worktree(commit: str, label: str, server_options: tuple[str, ...]) -> Iterator[Checkout]:
    """A detached worktree of `commit` for the length of the block, removed even on failure."""
    parent = Path(tempfile.mkdtemp(prefix="clickpulse-bench-old-"))
    tree = parent / "tree"
    _git("worktree", "add", "--detach", str(tree), commit)
    try:
        checkout = Checkout(label, tree, server_options)
        found = subprocess.run(
            [sys.executable, "-c", "import clickpulse_services as m; print(m.__file__)"],
            env={**os.environ, **checkout.env()},
            cwd=checkout.cwd(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not Path(found).resolve().is_relative_to(tree.resolve()):
            raise RuntimeError(f"the worktree's services import from {found}, not from {tree}")
        yield checkout
    finally:
        subprocess.run(
            ["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(tree)],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(parent, ignore_errors=True)
        subprocess.run(
            ["git", "-C", str(REPO_ROOT), "worktree", "prune"], capture_output=True, check=False
        )


def start_uvicorn(
    checkout: Checkout,
    app: str,
    host: str,
    port: int,
    env: Mapping[str, str],
    *,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    output = log.open("ab") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            checkout.uvicorn_argv(app, host, port),
            env={**env, **checkout.env()},
            cwd=checkout.cwd(),
            stdout=output,
            stderr=output,
        )
    finally:
        if not isinstance(output, int):
            output.close()


class ServerDidNotStart(RuntimeError):
    """A bench server never answered its health check; `why` is the last line of its log."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message + (f": {why}" if why else ""))
        self.why = why


def wait_healthy(
    url: str,
    tries: int = 100,
    server: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Polls `url`/health; a `server` that exits meanwhile fails at once, with the last line of
    its `log` (an old checkout's import error, say)."""
    for _ in range(tries):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if server is not None and server.poll() is not None:
            raise ServerDidNotStart(
                f"{url} exited with {server.returncode} (log: {log})", _last_line(log)
            )
        time.sleep(0.2)
    raise ServerDidNotStart(f"{url} did not become healthy (log: {log})", _last_line(log))


def _last_line(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    lines = log.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


def stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@dataclass(frozen=True)
class ServicePair:
    """A CRUD API and an e-commerce API that calls it."""

    crud_url: str
    shop_url: str


@contextlib.contextmanager
def service_pair(
    settings: Settings, checkout: Checkout, crud_port: int, shop_port: int
) -> Iterator[ServicePair]:
    """Both services of `checkout` on the given ports, against the stack's PostgreSQL and
    collector, with the environment the stack gives its own services."""
    host = settings.host
    crud_url, shop_url = f"http://{host}:{crud_port}", f"http://{host}:{shop_port}"
    env = {**os.environ, **settings.service_env()}
    logs = settings.logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    crud_log = logs / f"bench-{checkout.slug}-crud-api.log"
    shop_log = logs / f"bench-{checkout.slug}-ecommerce-api.log"
    servers = [
        start_uvicorn(checkout, CRUD_APP, host, crud_port, env, log=crud_log),
        start_uvicorn(
            checkout,
            SHOP_APP,
            host,
            shop_port,
            {**env, "CLICKPULSE_CRUD_API_URL": crud_url},
            log=shop_log,
        ),
    ]
    try:
        wait_healthy(crud_url, server=servers[0], log=crud_log)
        wait_healthy(shop_url, server=servers[1], log=shop_log)
        yield ServicePair(crud_url, shop_url)
    finally:
        for server in servers:
            stop(server)


def stack_pair(settings: Settings) -> ServicePair:
    host, ports = settings.host, settings.ports
    return ServicePair(f"http://{host}:{ports.crud_api}", f"http://{host}:{ports.ecommerce_api}")


class WorkersUnsupported(RuntimeError):
    """The stack's CLI has no --workers option (yet)."""


def _stack(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clickpulse.stack", *args],
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        check=False,
    )


def restart_stack_services(settings: Settings, workers: int | None) -> None:
    """Restarts only the stack's two services (storage and collector keep running), with
    `workers` worker processes each, or as the environment says when None."""
    supported = "--workers" in _stack("up", "--help").stdout
    if workers not in (None, 1) and not supported:
        raise WorkersUnsupported("`python -m clickpulse.stack up` has no --workers option")
    for component in all_components(settings):
        if component.name in SERVICE_NAMES:
            component.process.stop()
    env = dict(os.environ)
    argv = ["up"]
    if workers is not None:
        env["CLICKPULSE_SERVICE_WORKERS"] = str(workers)
        if supported:
            argv += ["--workers", str(workers)]
    result = _stack(*argv, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"stack up failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
