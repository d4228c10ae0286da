"""`python -m clickpulse.stack sql [QUERY | --file F] [--format F] [--param k=v] [--max-rows N]`:
without a query or a file, it reads a script from stdin, or opens the shell on a terminal."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from clickpulse.sql import formats
from clickpulse.sql.errors import explain
from clickpulse.sql.runner import Runner, analyst_session
from clickpulse.sql.script import Statement, UsageError, parse_params, split_script
from clickpulse.sql.stream import OutputClosed, QueryFailed
from clickpulse.stack.settings import Settings

INTERRUPTED = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", nargs="?", help="SQL; several statements separated by ;")
    parser.add_argument("-f", "--file", type=Path, help="read the statements from this file")
    parser.add_argument(
        "--format",
        help=f"a ClickHouse output format (default: {formats.TERMINAL_DEFAULT} on a terminal,"
        f" {formats.PIPE_DEFAULT} otherwise; CSVWithNames, JSONEachRow, Vertical, Parquet, ...)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="bound to {NAME:Type} in the query, as ClickHouse parses it (repeatable)",
    )
    parser.add_argument(
        "--max-rows",
        type=_positive,
        default=formats.DEFAULT_MAX_ROWS,
        metavar="N",
        help=f"rows a Pretty table shows (default {formats.DEFAULT_MAX_ROWS:,}); other formats"
        " are never cut",
    )


def _positive(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of rows (1 or more)")
    return int(raw)


def run(settings: Settings, args: argparse.Namespace) -> int:
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        params = parse_params(args.param)
        script, origin = _script(args)
        if script is None:
            from clickpulse.sql.shell import Shell

            return Shell(settings, max_rows=args.max_rows, params=params).run()
        return _run_script(settings, args, script, origin, params, errors)
    except UsageError as exc:
        errors.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2


def _script(args: argparse.Namespace) -> tuple[str | None, str]:
    if args.query is not None and args.file is not None:
        raise UsageError("give a query or --file, not both")
    if args.file is not None:
        try:
            return args.file.read_text(), str(args.file)
        except OSError as exc:
            raise UsageError(f"cannot read {args.file}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise UsageError(f"cannot read {args.file}: it is not UTF-8 text") from None
    if args.query is not None:
        return args.query, "query"
    if sys.stdin.isatty():
        return None, "shell"
    return sys.stdin.read(), "stdin"


def _run_script(
    settings: Settings,
    args: argparse.Namespace,
    script: str,
    origin: str,
    params: dict[str, object],
    errors: Console,
) -> int:
    statements = split_script(script)
    if not statements:
        raise UsageError(f"no statement in the {origin}")
    to_terminal = sys.stdout.isatty()
    fmt = formats.canonical(args.format) if args.format else None
    if fmt is not None:
        formats.check_sink(fmt, to_terminal=to_terminal)
        answering = [s for s in statements if s.takes_format]
        if formats.is_binary(fmt) and len(answering) > 1:
            raise UsageError(
                f"a {fmt} file holds one result and the {origin} has {len(answering)} statements"
                " that answer: run them one by one"
            )
    default = fmt or (formats.TERMINAL_DEFAULT if to_terminal else formats.PIPE_DEFAULT)
    runner = Runner(
        analyst_session(settings),
        sink=sys.stdout.buffer,
        to_terminal=to_terminal,
        max_rows=args.max_rows,
        params=params,
    )
    for index, statement in enumerate(statements):
        if index and to_terminal:
            sys.stdout.buffer.write(b"\n")
        try:
            runner.run(statement, default)
        except QueryFailed as failed:
            errors.print(f"[red]error{_where(statement, origin, len(statements))}:[/red]", end=" ")
            errors.print(explain(failed, statement.text))
            return 1
        except OutputClosed:
            return 0  # `| head` has what it wanted
        except KeyboardInterrupt:
            errors.print("interrupted: the query was cancelled")
            return INTERRUPTED
    return 0


def _where(statement: Statement, origin: str, count: int) -> str:
    if origin in {"query", "stdin"} and count == 1:
        return ""
    return f" in {escape(origin)}, statement at line {statement.line}"
