"""The HTTP API of the training service (FastAPI): ``api.app.create_app``; CLI in ``api.cli``."""
