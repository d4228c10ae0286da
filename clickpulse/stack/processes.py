"""Supervision of detached local processes: start with a log file and a pid file, wait for a
health check, stop with a signal then SIGKILL, and name whoever holds a port we need."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil


class StackError(RuntimeError):
    """A failure the user can act on; its message says what to do."""


@dataclass
class ManagedProcess:
    name: str
    argv: Sequence[str]
    log_file: Path
    pid_file: Path
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    ports: Sequence[int] = ()
    healthy: Callable[[], bool] = lambda: True
    stop_signal: int = signal.SIGTERM
    start_timeout: float = 60.0
    stop_timeout: float = 30.0
    user: str | None = None
    # Above 0: a lower CPU priority than the rest of the stack, its session's included (see
    # `lower_autogroup_priority`; components.PIPELINE_NICENESS says what it is worth).
    niceness: int = 0

    def running(self) -> psutil.Process | None:
        """The live process recorded in the pid file; a recycled pid does not count."""
        return recorded_process(self.pid_file)

    def at_its_niceness(self, proc: psutil.Process) -> bool:
        """Whether `proc` runs at the niceness `start` gives (`nice -n` adds to ours)."""
        return bool(proc.nice() == min(19, os.nice(0) + self.niceness))

    def start(self) -> psutil.Process:
        for port in self.ports:
            ensure_port_free(port, needed_by=self.name)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        with self.log_file.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            # A new session: the process outlives `nox -s up`, and `down` can signal its group.
            popen = subprocess.Popen(
                [*_nice_prefix(self.niceness), *self.argv],
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=self.user,
            )
        proc = psutil.Process(popen.pid)
        if self.niceness:
            lower_autogroup_priority(proc.pid, self.niceness)
        self.pid_file.write_text(json.dumps({"pid": proc.pid, **_start_of(proc)}))
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise StackError(
                    f"{self.name} exited with code {popen.returncode} while starting; "
                    f"last lines of {self.log_file}:\n{tail(self.log_file, 25)}"
                )
            if self.healthy():
                return proc
            time.sleep(0.2)
        self.stop()
        raise StackError(
            f"{self.name} was not healthy after {self.start_timeout:.0f}s; "
            f"last lines of {self.log_file}:\n{tail(self.log_file, 25)}"
        )

    def kill(self) -> None:
        """SIGKILL to its whole session, as a crash would: no shutdown, no flush."""
        proc = self.running()
        if proc is None:
            raise StackError(f"{self.name} is not running")
        os.killpg(os.getsid(proc.pid), signal.SIGKILL)
        wait_exited([proc], 10)
        self.pid_file.unlink(missing_ok=True)

    def stop(self) -> bool:
        """Stops the process and everything in its session. True if something was running."""
        proc = self.running()
        if proc is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        group = _session_members(proc)
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(self.stop_signal)
        alive = wait_exited([proc], self.stop_timeout)
        # Children (postgres backends, go helpers) get the same treatment, then SIGKILL.
        leftovers = wait_exited([*alive, *group], 0)
        for p in leftovers:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.terminate()
        alive = wait_exited(leftovers, 5)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        wait_exited(alive, 5)
        self.pid_file.unlink(missing_ok=True)
        return True


def wait_exited(procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of `procs` that have not exited within `timeout` seconds. A zombie has exited: our
    processes run in sessions of their own, reparented to PID 1, which reaps them when it gets
    to it. On these machines that took ~2 s a process, and psutil's own wait, which waits for
    the pid to go, made `down` take ~2 s a component (11-12 s for the stack, against ~4 s
    now); in a container whose PID 1 never reaps, every wait would run out its timeout."""
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while True:
        alive = [p for p in alive if not _exited(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _exited(proc: psutil.Process) -> bool:
    try:
        # A multi-threaded process's main thread shows as a zombie as soon as it exits, while
        # its other threads still run and hold its files and ports (a collector killed with
        # SIGKILL did): only a zombie whose threads are all gone has exited.
        return bool(proc.status() == psutil.STATUS_ZOMBIE and proc.num_threads() <= 1)
    except psutil.NoSuchProcess:
        return True


def _nice_prefix(niceness: int) -> list[str]:
    """`nice -n N`, so the process and every thread it starts run at that niceness from its
    first instruction (set afterwards, threads started meanwhile would keep the old one)."""
    if not niceness:
        return []
    nice = shutil.which("nice")
    if nice is None:
        raise StackError("the `nice` command (coreutils) is needed to start the stack")
    return [nice, "-n", str(niceness)]


def lower_autogroup_priority(pid: int, niceness: int) -> None:
    """The niceness of the session `pid` leads, where the kernel groups by session.

    With autogroup scheduling (`/proc/sys/kernel/sched_autogroup_enabled` = 1, as on this
    machine) the kernel first shares the CPU between sessions, and a process's own niceness
    only ranks it within its session: each process started here leads its own session, so a
    niceness alone changed nothing (measured: ClickHouse and the collector at nice 15, bench
    section 2's on/off ratio 0.819 against 0.819). Raising a session's niceness needs no
    privilege."""
    group = Path(f"/proc/{pid}/autogroup")
    if not group.exists():  # a kernel without autogroup: the process's niceness is enough
        return
    with contextlib.suppress(OSError):  # the process already exited: its start reports it
        group.write_text(str(niceness))


def recorded_process(pid_file: Path) -> psutil.Process | None:
    """The live process a pid file records; a recycled pid does not count."""
    try:
        record = json.loads(pid_file.read_text())
        proc = psutil.Process(record["pid"])
        if not _same_start(proc, record):
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (FileNotFoundError, ValueError, KeyError, psutil.Error):
        return None


def stack_up_since(run_dir: Path) -> float | None:
    """When the running local stack came up: the start of its oldest live process recorded in
    `run_dir` (None when none runs, as under compose). A component restarted alone does not
    move it."""
    starts = [
        proc.create_time()
        for pid_file in sorted(run_dir.glob("*.pid"))
        if (proc := recorded_process(pid_file)) is not None
    ]
    return min(starts, default=None)


def _start_of(proc: psutil.Process) -> dict[str, float]:
    """When `proc` started, on the wall clock and in seconds since boot."""
    create_time = proc.create_time()
    return {"create_time": create_time, "since_boot": create_time - psutil.boot_time()}


def _same_start(proc: psutil.Process, record: dict[str, float]) -> bool:
    """Whether `proc` is the process the pid file recorded, not a later one that got its pid.

    On Linux a start time is the boot time plus the seconds since boot, and the boot time is
    the wall clock less the uptime: when the clock is stepped (this VM's moved 21 s during a
    session), every start time moves with it, and a stack still running looked stopped (`down`
    left it running, `up` found its ports busy). The seconds since boot do not move there; the
    wall clock's start time is what other platforms keep. A later process matching either is
    not going to happen."""
    start = _start_of(proc)
    return any(abs(start[key] - record[key]) <= 1 for key in start if key in record)


def _session_members(proc: psutil.Process) -> list[psutil.Process]:
    try:
        sid = os.getsid(proc.pid)
    except ProcessLookupError:
        return []
    members = []
    for p in psutil.process_iter():
        try:
            if p.pid != proc.pid and os.getsid(p.pid) == sid:
                members.append(p)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def port_holder(port: int) -> str | None:
    """Describes the process listening on `port`, if any process is."""
    try:
        connections = psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        connections = []
    for conn in connections:
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            if conn.pid is None:
                return "another user's process"
            try:
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid} ({' '.join(proc.cmdline())[:120]})"
            except psutil.Error:
                return f"pid {conn.pid}"
    return None


def free_port() -> int:
    """A port nothing listens on now, for extra processes and test stacks. Not one the OS
    picks: those come from its range for outgoing connections (32768-60999), and an outgoing
    connection can take the port before the server meant for it binds it (a cluster test's
    shop found its port held by the collector's connection to ClickHouse)."""
    return free_port_run(1)


# Ports handed out by this process: two calls never return the same one.
_HANDED_OUT: set[int] = set()


def free_port_run(count: int) -> int:
    """The first of `count` consecutive ports nothing listens on now (a cluster's nodes take
    theirs from a base port), below the kernel's range for outgoing connections."""
    import random

    for _ in range(200):
        base = random.randrange(20_000, 32_000 - count)
        ports = range(base, base + count)
        if _HANDED_OUT.isdisjoint(ports) and all(_bindable(port) for port in ports):
            _HANDED_OUT.update(ports)
            return base
    raise StackError(f"found no {count} consecutive free ports in 20000-32000")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def ensure_port_free(port: int, *, needed_by: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return
        except OSError:
            pass
    holder = port_holder(port) or "an unknown process"
    raise StackError(
        f"port {port}, needed by {needed_by}, is busy: held by {holder}. "
        f"Stop it, or choose another port (see README: CLICKPULSE_*_PORT)."
    )


def tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def http_ok(url: str, *, expect: bytes | None = None, timeout: float = 1.0) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read()
            return response.status == 200 and (expect is None or expect in body)
    except OSError:
        return False


def tcp_ok(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
