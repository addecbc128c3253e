"""Fault tests: real workers killed, real API and Redis restarted in the middle of a run."""
