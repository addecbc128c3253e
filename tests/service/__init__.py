"""Service tests: real API, worker, Redis and databases (a package, so its conftest and helpers
do not shadow the top-level tests/conftest.py)."""
