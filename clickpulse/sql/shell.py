"""The analyst's interactive shell: prompt_toolkit for the line editor (history kept in the
stack's state folder, multi-line statements ended by `;`, SQL highlighting), the same runner,
formats and messages as the command line, and `\\d` to see what there is to query."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

from clickhouse_connect.driver.exceptions import ClickHouseError
from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.lexers import PygmentsLexer
from pygments.lexers.sql import SqlLexer
from rich.console import Console
from rich.markup import escape

from clickpulse.sql import catalog, formats
from clickpulse.sql.errors import explain
from clickpulse.sql.runner import Runner, analyst_session
from clickpulse.sql.script import UsageError, parse_params, split_script
from clickpulse.sql.stream import OutputClosed, QueryFailed, parse_server_error
from clickpulse.stack.settings import Settings

PROMPT = "analyst :) "
HELP = """\
End a statement with [bold];[/bold] to run it (Enter before that starts a new line; Alt+Enter
runs what is there). Up and Down go through the history.
  \\d              the tables you may query
  \\d TABLE        its columns, their types and comments
  \\format [NAME]  show or set the output format (PrettyCompact, Vertical, CSVWithNames, ...);
                  a FORMAT clause in a statement wins
  \\param [N=V]    list or set a parameter for {N:Type} placeholders
  SET name = v;   a ClickHouse setting for the rest of the session
  \\q              quit (or Ctrl-D)"""


def _complete(text: str) -> bool:
    stripped = text.strip()
    return (
        not stripped
        or stripped.startswith("\\")
        or stripped.lower() in {"exit", "quit"}
        or stripped.endswith(";")
    )


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt while a statement runs, whatever the prompt left behind.

    prompt_toolkit owns the terminal (raw mode, no ISIG) and SIGINT (an asyncio handler, put
    back through ctypes) while the prompt is up, and hands both back when it returns. Under the
    test suite's load a Ctrl-C was lost three runs in a row (test_sql, CI): the query ran on to
    its limit and the terminal echoed no ^C. So each statement runs with the terminal's ISIG on
    and Python's own SIGINT handler, set here rather than trusted."""
    fd = sys.stdin.fileno() if sys.stdin.isatty() else None
    if fd is not None:
        attrs = termios.tcgetattr(fd)
        if not attrs[3] & termios.ISIG:
            attrs[3] |= termios.ISIG
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is not None:  # None: set outside Python, nothing to put back
            signal.signal(signal.SIGINT, previous)


def _keys() -> KeyBindings:
    keys = KeyBindings()

    @keys.add("enter")
    def _enter(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        if _complete(buffer.text):
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n")

    return keys


class Shell:
    def __init__(self, settings: Settings, *, max_rows: int, params: dict[str, object]) -> None:
        self.settings = settings
        self.console = Console(highlight=False)
        self.errors = Console(stderr=True, highlight=False, soft_wrap=True)
        self.format = formats.TERMINAL_DEFAULT
        self.runner = Runner(
            analyst_session(settings),
            sink=sys.stdout.buffer,
            to_terminal=sys.stdout.isatty(),
            max_rows=max_rows,
            params=dict(params),
        )

    def run(self) -> int:
        history = Path(
            os.environ.get("CLICKPULSE_SQL_HISTORY", self.settings.state_dir / "sql_history")
        )
        history.parent.mkdir(parents=True, exist_ok=True)
        session: PromptSession[str] = PromptSession(
            history=FileHistory(str(history)),
            multiline=True,
            key_bindings=_keys(),
            lexer=PygmentsLexer(SqlLexer),
            prompt_continuation=lambda width, *_: " " * (width - 2) + "> ",
        )
        self.console.print(
            f"ClickHouse at {self.settings.ch_host}:{self.settings.ports.clickhouse_http} as the"
            " read-only analyst. End statements with ;  \\d lists the tables, \\? helps, \\q quits."
        )
        while True:
            try:
                text = session.prompt(PROMPT)
            except KeyboardInterrupt:
                continue  # Ctrl-C drops the line being typed, as in a shell
            except EOFError:
                return 0
            if text.strip().rstrip(";").lower() in {"exit", "quit", "\\q"}:
                return 0
            try:
                if text.strip().startswith("\\"):
                    self.command(text.strip())
                else:
                    self.statements(text)
            except UsageError as exc:
                self.errors.print(f"[red]error:[/red] {escape(str(exc))}")

    def statements(self, text: str) -> None:
        for statement in split_script(text):
            try:
                with _interruptible():
                    self.runner.run(statement, self.format)
            except QueryFailed as failed:
                self.errors.print("[red]error:[/red]", explain(failed, statement.text))
                return
            except KeyboardInterrupt:
                self.errors.print("cancelled")
                return
            except OutputClosed:
                return

    def command(self, text: str) -> None:
        name, _, rest = text.partition(" ")
        rest = rest.strip().rstrip(";").strip()
        try:
            if name in {"\\d", "\\dt"}:
                if rest:
                    catalog.describe_table(self.runner.client, self.console, rest)
                else:
                    catalog.list_tables(self.runner.client, self.console)
            elif name == "\\format":
                if rest:
                    fmt = formats.canonical(rest)
                    formats.check_sink(fmt, to_terminal=self.runner.to_terminal)
                    self.format = fmt
                self.console.print(f"format: {self.format}")
            elif name == "\\param":
                if rest:
                    self.runner.params.update(parse_params([rest]))
                for key, value in self.runner.params.items():
                    self.console.print(f"{key} = {escape(str(value))}")
            elif name in {"\\?", "\\h", "\\help"}:
                self.console.print(HELP)
            else:
                raise UsageError(f"unknown command {text.split()[0]}; \\? lists them")
        except QueryFailed as failed:
            self.errors.print("[red]error:[/red]", explain(failed, text))
        except ClickHouseError as exc:  # from the catalogue's own queries
            self.errors.print("[red]error:[/red]", explain(parse_server_error(str(exc)), text))
