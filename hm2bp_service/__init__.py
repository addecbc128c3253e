"""The service layer that the API (``api``) and the workers (``worker``) share.

``settings`` (configuration), ``states`` (the job states), ``store`` (the database, one
repository per aggregate, frozen records), ``events`` (live event streams), ``artifacts`` (files
through fsspec), ``datasets`` (built-ins and uploads, and their facts), ``uploads`` (accepting a
dataset), ``dispatch`` (queues and sending a job id), ``lifecycle`` (submit, cancel, requeue or
give up), ``sweeps``, ``workers`` (the live-worker registry), ``services`` (one process's set).
It imports neither ``api`` nor ``worker``, and building it starts no Celery app. This module
imports nothing, so that light users (the client's ``states``) stay light.
"""
