"""`nox -s sql`: queries as the read-only analyst, streamed in ClickHouse's own output formats,
from the command line or an interactive shell."""
