"""Grafana dashboards as code, the ClickHouse plugin's macros, and the offline report."""
