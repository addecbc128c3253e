"""Alembic migrations of the job store (run by ``worker.store.migrate``)."""
