"""The training service's worker side and the pieces the API shares with it.

``settings`` (configuration), ``store`` (the job store: SQLAlchemy models and ``JobStore``),
``events`` (per-job event streams in Redis, history in the database), ``artifacts`` (files under
one root through fsspec), ``celery_app`` / ``tasks`` / ``supervisor`` / ``child`` / ``sweeper``
(running jobs). The API imports from here; nothing here imports the API.
"""
