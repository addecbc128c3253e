"""Alembic migrations of the job store (run by ``hm2bp_service.store.migrate``)."""
