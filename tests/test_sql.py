"""`nox -s sql` as the analyst uses it: `python -m clickpulse.stack sql` (what the nox session
execs) against the running ClickHouse, piped, through a pseudo-terminal, and as a shell."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from clickhouse_connect.driver.client import Client

from clickpulse.stack.settings import REPO_ROOT

ROWS = 300_000
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def sql(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clickpulse.stack", "sql", *args],
        cwd=REPO_ROOT,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )


def on_terminal(*args: str) -> tuple[int, str]:
    """Runs the command with a pseudo-terminal as stdout; returns its exit code and what a
    user would read (colours stripped)."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "clickpulse.stack", "sql", *args],
        cwd=str(REPO_ROOT),
        env=_env(TERM="xterm"),
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 200),
    )
    child.expect(pexpect.EOF)
    child.close()
    return int(child.exitstatus or 0), ANSI.sub("", child.before or "")


@pytest.fixture(scope="module")
def spans(admin: Client) -> Iterator[str]:
    """300,000 spans shaped like the exporter's, in a table of their own that the analyst may
    read (analytics.*), so no other test or dashboard sees them."""
    table = f"analytics.sql_spans_{uuid.uuid4().hex[:8]}"
    admin.command(f"CREATE TABLE {table} AS otel.otel_traces")
    admin.command(
        f"""INSERT INTO {table} (Timestamp, TraceId, SpanId, SpanName, SpanKind, ServiceName,
            ResourceAttributes, SpanAttributes, Duration, StatusCode)
        SELECT now64(9) - toIntervalMicrosecond(number * 100),
            lower(hex(MD5(toString(intDiv(number, 4))))),
            substring(lower(hex(MD5(toString(number)))), 1, 16),
            'GET /products/{{product_id}}', 'Server', 'crud-api',
            map('service.name', 'crud-api', 'service.instance.id', 'crud-api-vm-1234'),
            map('http.route', '/products/{{product_id}}', 'http.response.status_code', '200',
                'session.id', concat('session-', lower(hex(MD5(toString(intDiv(number, 20)))))),
                'user_agent.original', concat('Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36',
                    ' (KHTML, like Gecko) Chrome/131.0 Safari/537.36 ', toString(number))),
            1000000 + number % 50000000, 'Unset'
        FROM numbers({ROWS})"""
    )
    yield table
    admin.command(f"DROP TABLE IF EXISTS {table}")


TRICKY = [
    "tab\there",
    "new\nline",
    "quote ' and \" and `",
    "back\\slash",
    "comma, semicolon; pipe |",
    "ünïcødé ✓ 漢字",
    "",
    "x" * 20_000,
]


@pytest.fixture(scope="module")
def tricky(admin: Client) -> Iterator[str]:
    """Values every text format has to escape, in the column types of the traces."""
    table = f"analytics.sql_tricky_{uuid.uuid4().hex[:8]}"
    admin.command(
        f"CREATE TABLE {table} (n UInt32, TraceId String, Timestamp DateTime64(9),"
        " Duration UInt64, Attributes Map(LowCardinality(String), String),"
        " Note Nullable(String), Amount Nullable(Float64)) ENGINE = MergeTree ORDER BY n"
    )
    rows = [
        [
            i,
            uuid.uuid4().hex,
            1_764_400_000_123_456_789 + i,
            i * 1_000_003,
            {"http.route": "/products/{product_id}", "note": TRICKY[i % len(TRICKY)]},
            None if i % 3 == 0 else TRICKY[i % len(TRICKY)],
            None if i % 4 == 0 else i / 7,
        ]
        for i in range(200)
    ]
    admin.insert(
        table,
        rows,
        column_names=["n", "TraceId", "Timestamp", "Duration", "Attributes", "Note", "Amount"],
    )
    yield table
    admin.command(f"DROP TABLE IF EXISTS {table}")


def _running(admin: Client, marker: str) -> int:
    return int(
        admin.query(
            "SELECT count() FROM system.processes WHERE query LIKE {m:String}"
            " AND query NOT LIKE '%system.processes%'",
            parameters={"m": f"%{marker}%"},
        ).result_rows[0][0]
    )


def test_a_300k_row_result_streams_in_bounded_memory(spans: str, admin: Client) -> None:
    def first_line_after(args: list[str]) -> tuple[subprocess.Popen[bytes], float, bytes]:
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "clickpulse.stack", "sql", *args],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            env=_env(),
        )
        assert proc.stdout is not None
        header = proc.stdout.readline()
        return proc, time.monotonic() - started, header + proc.stdout.readline()

    # The same command's start-up (interpreter, imports, one round trip), measured now, on
    # this box under its current load: what is left is the wait for the first rows.
    quick, startup, _ = first_line_after(["SELECT 1 AS one"])
    quick.communicate()

    marker = f"stream-{uuid.uuid4().hex[:8]}"
    proc, first_rows_after, head = first_line_after([f"SELECT * /* {marker} */ FROM {spans}"])
    assert proc.stdout is not None
    # The rows came while ClickHouse was still producing the rest: streamed, not collected.
    assert _running(admin, marker) == 1
    assert first_rows_after - startup < 1.0, (first_rows_after, startup)
    assert head.startswith(b"Timestamp\tTraceId\t")

    lines, size = head.count(b"\n"), len(head)
    peak_kib = _peak_rss_kib(proc.pid)
    while chunk := proc.stdout.read(1 << 20):
        lines += chunk.count(b"\n")
        size += len(chunk)
        peak_kib = max(peak_kib, _peak_rss_kib(proc.pid))
    assert proc.wait(timeout=60) == 0
    assert lines == ROWS + 1
    # Measured: 38 MiB at peak for 140 MiB of output. Holding the result needs more than the
    # bound, which makes the bound mean something.
    bound_mib = 80
    assert size > 1.5 * bound_mib * 2**20
    assert peak_kib / 1024 < bound_mib, f"{peak_kib / 1024:.0f} MiB for {size / 2**20:.0f} MiB"


def _peak_rss_kib(pid: int) -> int:
    """The process's own high-water mark (VmHWM), while it runs. Not wait4's ru_maxrss: that
    also counts the forking parent's memory (this test process) from before the exec."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return int(found.group(1)) if found else 0  # an exited process has no memory left


def test_piped_output_keeps_ids_and_long_values_whole(spans: str, reader: Client) -> None:
    query = f"SELECT TraceId, SpanId, SpanAttributes['user_agent.original'] AS ua FROM {spans}"
    expected = reader.query(f"{query} ORDER BY Timestamp LIMIT 50").result_rows
    result = sql(f"{query} ORDER BY Timestamp LIMIT 50")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header == "TraceId\tSpanId\tua"  # TSV with names when piped
    assert [tuple(row.split("\t")) for row in rows] == expected
    assert all(TRACE_ID.match(row[0]) for row in expected)
    # A Pretty table asked for in a pipe cuts nothing either.
    pretty = sql(f"{query} ORDER BY Timestamp LIMIT 3", "--format", "PrettyCompact")
    for trace_id, span_id, ua in expected[:3]:
        assert trace_id in pretty.stdout and span_id in pretty.stdout and ua in pretty.stdout
    assert "…" not in pretty.stdout and "⋯" not in pretty.stdout


@pytest.mark.parametrize("fmt", ["TSVWithNames", "CSVWithNames", "JSONEachRow", "Parquet"])
def test_each_format_round_trips(fmt: str, tricky: str, admin: Client, tmp_path: Path) -> None:
    """What the command writes, read back by ClickHouse in the same format, is the table."""
    out = tmp_path / "out"
    with out.open("wb") as sink:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "clickpulse.stack",
                "sql",
                f"SELECT * FROM {tricky}",
                "--format",
                fmt.lower(),
            ],
            cwd=REPO_ROOT,
            stdout=sink,
            stderr=subprocess.PIPE,
            env=_env(),
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    copy = f"{tricky}_{fmt.lower()}"
    admin.command(f"CREATE TABLE {copy} AS {tricky}")
    try:
        admin.raw_insert(copy, insert_block=out.read_bytes(), fmt=fmt)
        dump = "SELECT * FROM {} ORDER BY n FORMAT TSVWithNamesAndTypes"
        original = admin.raw_query(dump.format(tricky))
        assert admin.raw_query(dump.format(copy)) == original
        assert original.count(b"\n") == 200 + 2
    finally:
        admin.command(f"DROP TABLE IF EXISTS {copy}")


def test_vertical_shows_every_value_whole(tricky: str) -> None:
    result = sql(f"SELECT n, TraceId, Note FROM {tricky} WHERE n = 7", "--format", "vertical")
    assert result.returncode == 0, result.stderr
    assert "Row 1:" in result.stdout and "x" * 20_000 in result.stdout


@pytest.mark.parametrize(
    ("statement", "says"),
    [
        ("DROP TABLE otel.otel_traces", "DROP TABLE is for admin"),
        ("INSERT INTO otel.otel_traces (TraceId) VALUES ('x')", "otel_writer"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "no user may read files"),
        ("ALTER TABLE analytics.request_metrics DELETE WHERE 1", "ALTER DELETE is for admin"),
    ],
)
def test_a_forbidden_statement_says_the_analyst_is_read_only(
    statement: str, says: str, reader: Client
) -> None:
    result = sql(statement)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "the analyst is read-only" in result.stderr and says in result.stderr, result.stderr
    assert "ACCESS_DENIED" in result.stderr  # ClickHouse's own message follows ours
    assert "root:x:0:0" not in result.stderr
    assert reader.query("SELECT count() FROM system.tables WHERE name = 'otel_traces'").result_rows


def test_a_syntax_error_shows_clickhouses_message_and_where() -> None:
    result = sql("SELECT count(\nFROM otel.otel_traces")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "error: syntax error at line 2, column 6:"
    assert lines[1] == "  FROM otel.otel_traces"
    assert lines[2] == "       ^"
    assert "ClickHouse: Syntax error: failed at position 20" in lines[3]
    assert "FORMAT" not in result.stderr  # the FORMAT the command adds is not the user's


def test_a_query_over_a_limit_says_which_and_how_to_raise_it() -> None:
    memory = sql(
        "SELECT count() FROM (SELECT groupArray(number) FROM numbers(1e9))"
        " SETTINGS max_memory_usage = '20Mi'"
    )
    assert memory.returncode == 1
    assert "max_memory_usage (20 MiB)" in memory.stderr
    # Twice what it was about to use when stopped (24 MiB here), enough to get further.
    raised = re.search(r"SETTINGS max_memory_usage = '(\d+)Mi'", memory.stderr)
    assert raised is not None and int(raised.group(1)) >= 40, memory.stderr
    assert "MEMORY_LIMIT_EXCEEDED" in memory.stderr

    # Hit half-way through a streamed result: the rows already written stay clean.
    timeout = sql("SELECT number FROM numbers(1e11) SETTINGS max_execution_time = 1")
    assert timeout.returncode == 1
    assert timeout.stdout.startswith("number\n0\n1\n")
    assert "exception" not in timeout.stdout.lower() and "Code:" not in timeout.stdout
    assert timeout.stdout.endswith("\n") and timeout.stdout.splitlines()[-1].isdigit()
    assert "max_execution_time (1 s)" in timeout.stderr
    assert "SETTINGS max_execution_time = 2" in timeout.stderr


def test_a_file_of_statements_with_parameters(tmp_path: Path, tricky: str) -> None:
    script = tmp_path / "report.sql"
    script.write_text(
        "-- the analyst's own report; a setting for what follows\n"
        "SET max_execution_time = 7;\n"
        "SELECT getSetting('max_execution_time') AS seconds;\n\n"
        "SELECT n FROM analytics.{table:Identifier}\n"
        "WHERE n IN {ns:Array(UInt32)} AND Note != {note:String} ORDER BY n;\n"
        "SELECT 'a;b' AS text FORMAT JSONEachRow;\n"
    )
    result = sql(
        "--file",
        str(script),
        "--param",
        f"table={tricky.removeprefix('analytics.')}",
        "--param",
        "ns=[1,2,4]",
        "--param",
        "note=back\\\\slash",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == 'seconds\n7\nn\n1\n2\n4\n{"text":"a;b"}\n'
    # n = 11 has Note 'back\slash'; the value binds as ClickHouse parses it (escaped text).
    three = sql(
        "SELECT count() FROM analytics.{t:Identifier} WHERE n = 11 AND Note = {note:String}",
        "--param",
        f"t={tricky.removeprefix('analytics.')}",
        "--param",
        "note=back\\\\slash",
    )
    assert three.stdout == "count()\n1\n"

    failing = tmp_path / "failing.sql"
    failing.write_text("SELECT 1 AS one;\n\nSELECT nope;\n")
    result = sql("--file", str(failing))
    assert result.returncode == 1
    assert result.stdout == "one\n1\n"
    assert f"error in {failing}, statement at line 3:" in result.stderr


def test_statements_from_stdin() -> None:
    result = sql(stdin="SELECT 1 AS one;\nSELECT 2 AS two;\n")
    assert (result.returncode, result.stdout) == (0, "one\n1\ntwo\n2\n")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--param", "nope", "SELECT 1"], "write it as name=value"),
        (["--file", "/no/such.sql"], "cannot read /no/such.sql: No such file or directory"),
        (["--file", "/etc/hostname", "SELECT 1"], "give a query or --file, not both"),
        (["SELECT 1", "--format", "Parquett"], "Unknown format Parquett"),
        (["SELECT 1", "--format", "CSV; DROP"], "is not a format name"),
        (["SELECT 1", "--max-rows", "0"], "is not a number of rows"),
        (["SELECT {x:UInt8}"], "give one with --param x=VALUE"),
        # chdb tries an unknown table name as a file: not a "read-only" matter for the analyst.
        (["SELECT count() FROM request_metrics"], "no such table"),
        (["-- nothing but a comment"], "no statement in the query"),
        (["SELECT 1; SELECT 2", "--format", "Parquet"], "holds one result"),
    ],
)
def test_bad_input_gets_a_clear_message_not_a_traceback(args: list[str], says: str) -> None:
    result = sql(*args)
    assert result.returncode in (1, 2)
    assert says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_reader_that_stops_early_ends_the_query(admin: Client) -> None:
    """`... | head -1`: no traceback, exit 0, and ClickHouse stops producing at once."""
    marker = f"head-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clickpulse.stack",
            "sql",
            f"SELECT number /* {marker} */ FROM numbers(1e12)",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == b"number\n"
    assert _running(admin, marker) == 1
    proc.stdout.close()
    assert proc.wait(timeout=30) == 0
    assert proc.stderr.read() == b""
    deadline = time.monotonic() + 10
    while _running(admin, marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _running(admin, marker) == 0


def test_on_a_terminal_a_pretty_table_stops_at_max_rows(spans: str) -> None:
    code, screen = on_terminal(f"SELECT TraceId, Duration FROM {spans}", "--max-rows", "6")
    assert code == 0, screen
    assert "┌─TraceId" in screen
    assert f"Showed 6 out of {ROWS} rows." in screen
    assert re.search(r"│ [0-9a-f]{32} │", screen)
    code, screen = on_terminal("SELECT 1", "--format", "Parquet")
    assert code == 2 and "Parquet is binary and stdout is a terminal" in screen


class Shell:
    PROMPT = "analyst :)"

    def __init__(self, history: Path) -> None:
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "clickpulse.stack", "sql"],
            cwd=str(REPO_ROOT),
            # No cursor-position requests: pexpect does not answer them.
            env=_env(TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", CLICKPULSE_SQL_HISTORY=str(history)),
            encoding="utf-8",
            timeout=60,
            dimensions=(50, 200),
        )
        self.wait()

    def wait(self) -> str:
        """What was printed until the next prompt. prompt_toolkit redraws the prompt line as
        keys are typed; a new prompt starts by turning bracketed paste on."""
        self.child.expect_exact("\x1b[?2004h")
        before = self.child.before or ""
        self.child.expect_exact(self.PROMPT)
        return ANSI.sub("", before)

    def run(self, *lines: str) -> str:
        for line in lines:
            self.child.send(line + "\r")
        return self.wait()


def test_the_shell_runs_a_scripted_session(tmp_path: Path, tricky: str, admin: Client) -> None:
    history = tmp_path / "history"
    shell = Shell(history)
    # One statement over three lines: Enter before the `;` continues it.
    out = shell.run("SELECT n, TraceId", "FROM " + tricky, "WHERE n < 3 ORDER BY n;")
    assert re.search(r"1\. │ +0 │ [0-9a-f]{32} │", out), out

    out = shell.run("\\d")
    assert "otel.otel_traces" in out and "analytics.request_metrics" in out
    assert "One row per request to the services" in out  # the tables' comments
    out = shell.run("\\d otel_traces")
    assert "TraceId" in out and "W3C trace id, 32 hex digits" in out

    assert "format: CSVWithNames" in shell.run("\\format csvwithnames")
    out = shell.run(f"SELECT n, Note FROM {tricky} WHERE n = 4;")
    assert '"n","Note"\n4,"comma, semicolon; pipe |"' in out.replace("\r\n", "\n")
    shell.run("\\format PrettyCompact")

    # A setting holds for the rest of the session.
    out = shell.run("SET max_execution_time = 7; SELECT getSetting('max_execution_time') AS s;")
    assert re.search(r"│ 7 │", out), out
    assert "Parquet is binary" in shell.run("\\format Parquet")
    shell.run("\\param ns=[5,6]")
    assert re.search(
        r"│ +6 │", shell.run(f"SELECT n FROM {tricky} WHERE n IN {{ns:Array(UInt8)}};")
    )

    out = shell.run("DROP TABLE otel.otel_traces;")
    assert "the analyst is read-only" in out and "admin" in out
    out = shell.run("SELEC 1;")
    assert "syntax error at line 1, column 1" in out

    # Ctrl-C cancels the running query, in ClickHouse too, and the shell goes on.
    marker = f"shell-{uuid.uuid4().hex[:8]}"
    shell.child.send(f"SELECT count() /* {marker} */ FROM numbers(1e13);\r")
    deadline = time.monotonic() + 20
    while not _running(admin, marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _running(admin, marker) == 1
    shell.child.sendintr()
    assert "cancelled" in shell.wait()
    deadline = time.monotonic() + 10
    while _running(admin, marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _running(admin, marker) == 0
    assert "42" in shell.run("SELECT 42 AS answer;")
    shell.child.sendeof()  # Ctrl-D
    shell.child.expect(pexpect.EOF)

    # The history outlives the session: Up brings back the last statement.
    again = Shell(history)
    out = again.run("\x1b[A")
    assert "answer" in out and "42" in out
    again.child.send("\\q\r")
    again.child.expect(pexpect.EOF)
    again.child.close()
    assert again.child.exitstatus == 0
