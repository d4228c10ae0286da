"""The stack watching itself: the alert rules (one source for Grafana's provisioning and for
`nox -s alerts`), their evaluation with Grafana's pending/firing semantics, PostgreSQL's
statistics as metrics, and the monitor process that samples and evaluates continuously."""
