"""Benchmarks (`nox -s bench`) and fault drills (`nox -s drills`) against the local stack."""
