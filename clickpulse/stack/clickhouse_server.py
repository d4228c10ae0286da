"""A real ClickHouse server process from the `chdb` wheel.

chdb's low-level `_chdb.query` runs ClickHouse's clickhouse-local server code, and
`SYSTEM START LISTEN` there opens ClickHouse's own HTTP and native handlers. They live only while
that call runs, so its last statement blocks (an endless `sleepEachRow`, idle on CPU) until the
launcher cancels it with `KILL QUERY`: that ends the call normally and the process exits cleanly.
The block does not read stdin or a FIFO, because that would need `READ ON FILE` for `default`.

Run as `python -m clickpulse.stack.clickhouse_server --data DIR --http-port P --native-port P`
with the CLICKPULSE_CH_*_PASSWORD variables set (clickhouse/users.xml reads them). A node of the
local cluster adds `--include-config FILE` (its cluster, macros, background pools) and
`--include-users FILE` (the user its peers connect as): ClickHouse merges them as it merges any
config.d/ and users.d/ file.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import sys
import threading
import urllib.request
from pathlib import Path
from xml.sax.saxutils import escape

from clickpulse.stack.settings import REPO_ROOT

USERS_XML = REPO_ROOT / "clickhouse" / "users.xml"
BLOCK_MARKER = "clickpulse-server-block"
BLOCK_QUERY = (
    f"SELECT sleepEachRow(1) /* {BLOCK_MARKER} */ FROM numbers(1000000000000) "
    "SETTINGS max_block_size = 1, function_sleep_max_microseconds_per_block = 0"
)


def render_config(*, listen_host: str, http_port: int, native_port: int, users_xml: Path) -> str:
    return f"""<clickhouse>
  <listen_host>{escape(listen_host)}</listen_host>
  <http_port>{http_port}</http_port>
  <tcp_port>{native_port}</tcp_port>
  <users_config>{escape(str(users_xml))}</users_config>
  <logger><level>information</level><console>1</console></logger>
</clickhouse>
"""


def _cancel_block(http_port: int) -> None:
    """Ends the blocking statement; the server then shuts down like any finished query."""
    password = os.environ["CLICKPULSE_CH_ADMIN_PASSWORD"]
    token = base64.b64encode(f"admin:{password}".encode()).decode()
    sql = f"KILL QUERY WHERE query LIKE 'SELECT sleepEachRow(1) /* {BLOCK_MARKER} */%' SYNC"
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/",
        data=sql.encode(),
        headers={"Authorization": f"Basic {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def _install_includes(folder: Path, files: list[Path]) -> None:
    """Replaces what a previous start left in `folder` (config.d/ or users.d/) with `files`."""
    shutil.rmtree(folder, ignore_errors=True)
    if files:
        folder.mkdir()
        for path in files:
            shutil.copyfile(path, folder / path.name)


def serve(
    data_dir: Path,
    *,
    listen_host: str,
    http_port: int,
    native_port: int,
    include_config: list[Path] | None = None,
    include_users: list[Path] | None = None,
) -> int:
    data_dir.mkdir(parents=True, exist_ok=True)
    # Importing chdb opens an embedded session that reads ./config.xml: keep it away from ours.
    import_cwd = data_dir / "import-cwd"
    import_cwd.mkdir(exist_ok=True)
    os.chdir(import_cwd)
    from chdb import _chdb

    server_dir = data_dir / "server"
    server_dir.mkdir(exist_ok=True)
    users_xml = USERS_XML
    _install_includes(server_dir / "config.d", include_config or [])
    _install_includes(server_dir / "users.d", include_users or [])
    if include_users:
        # ClickHouse merges the users.d/ beside the users file it was given: a link to the
        # shared file here (edits still reload), so a single server reads users.xml alone.
        users_xml = server_dir / "users.xml"
        users_xml.unlink(missing_ok=True)
        users_xml.symlink_to(USERS_XML)
    (server_dir / "config.xml").write_text(
        render_config(
            listen_host=listen_host,
            http_port=http_port,
            native_port=native_port,
            users_xml=users_xml,
        )
    )
    os.chdir(server_dir)

    outcome: dict[str, str] = {}

    def run() -> None:
        result = _chdb.query(  # type: ignore[attr-defined]
            f"SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; {BLOCK_QUERY}",
            # Also the default output format of the HTTP handler: the server's is TabSeparated.
            "TabSeparated",
            path=str(data_dir / "db"),
        )
        outcome["error"] = result.error_message() or ""

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    worker = threading.Thread(target=run, name="clickhouse", daemon=True)
    worker.start()
    print(
        f"clickhouse: listening on {listen_host} http={http_port} native={native_port}", flush=True
    )
    while worker.is_alive():
        if stopping.wait(0.5):
            print("clickhouse: stopping", flush=True)
            try:
                _cancel_block(http_port)
            except OSError as exc:
                print(f"clickhouse: could not cancel cleanly ({exc}); exiting", flush=True)
                return 1
            worker.join(timeout=30)
            break
    if not stopping.is_set():
        print(f"clickhouse: the server ended unexpectedly: {outcome.get('error')}", flush=True)
        return 1
    print("clickhouse: stopped", flush=True)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8123)
    parser.add_argument("--native-port", type=int, default=9000)
    parser.add_argument("--include-config", type=Path, action="append", default=[])
    parser.add_argument("--include-users", type=Path, action="append", default=[])
    args = parser.parse_args()
    code = serve(
        args.data.resolve(),
        listen_host=args.listen_host,
        http_port=args.http_port,
        native_port=args.native_port,
        include_config=[p.resolve() for p in args.include_config],
        include_users=[p.resolve() for p in args.include_users],
    )
    sys.stdout.flush()
    # Skip interpreter teardown: chdb's static destructors can hang after the engine stopped.
    os._exit(code)


if __name__ == "__main__":
    main()
