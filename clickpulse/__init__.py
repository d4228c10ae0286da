"""clickpulse: request and business analytics on ClickHouse, fed by OpenTelemetry."""
