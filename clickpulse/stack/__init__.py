"""The local stack: real ClickHouse, the official OpenTelemetry Collector and PostgreSQL as
processes on 127.0.0.1, started and supervised by `nox -s up` / `down` / `status`."""
