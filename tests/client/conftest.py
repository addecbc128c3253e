"""The client tests run the CLI and the Python client against the real service of the service
tests (uvicorn, a Celery worker, Redis, SQLite): its fixtures are imported, not copied."""

from service.conftest import digits_npz, redis_db, service  # noqa: F401
