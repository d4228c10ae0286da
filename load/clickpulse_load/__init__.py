"""The load generator: k6 scenarios driven by a Python runner, with an ingestion audit."""
