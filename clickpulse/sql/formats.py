"""Which of ClickHouse's output formats a result is written in, and the settings that make its
Pretty formats fit a terminal or keep every value whole."""

from __future__ import annotations

import shutil

from clickpulse.sql.script import UsageError

TERMINAL_DEFAULT = "PrettyCompact"
PIPE_DEFAULT = "TSVWithNames"
# ClickHouse's own clients stop a Pretty table there and say how many rows there were.
DEFAULT_MAX_ROWS = 10_000

# The formats people type most, by lower-case name, so `--format csv` works; any other name is
# passed to ClickHouse as written (`SELECT name FROM system.formats WHERE is_output` lists them).
_COMMON = [
    "TabSeparated",
    "TSV",
    "TSVWithNames",
    "TSVWithNamesAndTypes",
    "TSVRaw",
    "CSV",
    "CSVWithNames",
    "JSON",
    "JSONEachRow",
    "JSONCompact",
    "JSONCompactEachRow",
    "JSONLines",
    "NDJSON",
    "Pretty",
    "PrettyCompact",
    "PrettyCompactMonoBlock",
    "PrettySpace",
    "Vertical",
    "Markdown",
    "Values",
    "Parquet",
    "Arrow",
    "ArrowStream",
    "ORC",
    "Avro",
    "Native",
    "RowBinary",
    "RowBinaryWithNamesAndTypes",
    "MsgPack",
    "BSONEachRow",
    "Npy",
    "Null",
]
_BY_LOWER = {name.lower(): name for name in _COMMON}
# Not for a terminal: written only to a file or a pipe.
BINARY = frozenset(
    {
        "parquet",
        "arrow",
        "arrowstream",
        "orc",
        "avro",
        "native",
        "rowbinary",
        "rowbinarywithnamesandtypes",
        "msgpack",
        "bsoneachrow",
        "npy",
        "protobuf",
        "capnproto",
    }
)


def canonical(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise UsageError(f"--format {name!r} is not a format name (e.g. CSVWithNames, Parquet)")
    return _BY_LOWER.get(name.lower(), name)


def is_binary(name: str) -> bool:
    return name.lower() in BINARY


def check_sink(name: str, *, to_terminal: bool) -> None:
    if to_terminal and is_binary(name):
        raise UsageError(
            f"{name} is binary and stdout is a terminal: redirect it to a file"
            f" (nox -s sql -- --format {name} ... > result.{name.lower()})"
        )


def output_settings(*, to_terminal: bool, max_rows: int) -> dict[str, object]:
    """Sent with every query; only the Pretty formats and Vertical read them."""
    settings: dict[str, object] = {
        "output_format_pretty_max_rows": max_rows,
        # Stops a SELECT whose client went away (Ctrl-C, `| head`) at once: a count() over
        # numbers(1e12) left by its client was still in system.processes 2 s later without it
        # (over HTTP the server otherwise notices only when it next writes), gone with it.
        "cancel_http_readonly_queries_on_client_close": 1,
        # 26.9 appends "-- 1.29 million" to every row whose last column is a big number (a
        # duration in ns): noise in a table of spans.
        "output_format_pretty_single_large_number_tip_threshold": 0,
    }
    if to_terminal:
        settings |= {
            "output_format_pretty_color": 1,
            # A few rows wider than the terminal read better one column per line.
            "output_format_pretty_fallback_to_vertical_min_table_width": shutil.get_terminal_size()[
                0
            ],
            "output_format_pretty_max_value_width": 10_000,
        }
    else:
        # Piped or in a file, a Pretty table keeps every value and column name whole (the
        # server's default cuts values at 10,000 characters and names at 24).
        settings |= {
            "output_format_pretty_color": 0,
            "output_format_pretty_max_value_width": 2**63,
            "output_format_pretty_max_column_name_width_cut_to": 2**16,
        }
    return settings
