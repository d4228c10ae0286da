"""What both services share: settings, telemetry, database wiring, client identity."""
