"""The job store: the system of record for users, tokens, datasets, jobs, their events and metrics.

One repository per aggregate, each the only writer of its tables, all on one ``Database``:

=================  ==========================================================
``store.users``    users, API tokens, webhook signing secrets (``users.py``)
``store.datasets`` uploaded datasets and their facts (``datasets.py``)
``store.jobs``     jobs, leases, transitions, epoch metrics (``jobs.py``)
``store.events``   each job's numbered events (``events.py``)
``store.webhooks`` the webhook outbox (``webhooks.py``)
``store.sweeps``   sweeps (``sweeps.py``)
=================  ==========================================================

Reads return the frozen records of ``records.py``. The lifecycle rules that combine these writes
(submit, cancel, requeue or give up) are in ``hm2bp_service.lifecycle``.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from ..sealing import SecretBox
from . import records, schema
from .database import Database, make_engine, migrate
from .datasets import Datasets, StorageLimit
from .events import Events
from .jobs import IdempotencyConflict, Jobs, NewJob, QueueLimit
from .records import (
    DatasetRecord,
    Event,
    JobRecord,
    Lease,
    LeaseRecord,
    SweepRecord,
    TransitionRecord,
    UserRecord,
    WebhookDeliveryRecord,
)
from .schema import new_id, utcnow
from .sweeps import Sweeps
from .users import Users
from .webhooks import WebhookOutbox

__all__ = [
    "DatasetRecord", "Event", "IdempotencyConflict", "JobRecord", "Lease", "LeaseRecord", "NewJob", "QueueLimit",
    "StorageLimit", "Store", "SweepRecord", "TransitionRecord", "UserRecord", "WebhookDeliveryRecord", "make_engine",
    "migrate", "new_id", "records", "schema", "utcnow",
]


class Store:
    """All reads and writes of the service's database, one repository per aggregate."""

    def __init__(self, engine: Engine, box: SecretBox | None = None):
        """``box`` opens the webhook signing secrets; a store without it (the CLI's token
        commands) can do everything but read or make one."""
        self.db = Database(engine)
        self.users = Users(self.db, box)
        self.datasets = Datasets(self.db)
        self.jobs = Jobs(self.db)
        self.events = Events(self.db)
        self.webhooks = WebhookOutbox(self.db, box)
        self.sweeps = Sweeps(self.db)

    @classmethod
    def from_url(cls, url: str, box: SecretBox | None = None) -> Store:
        return cls(make_engine(url), box)

    @property
    def local(self) -> bool:
        """A SQLite file: reads are local and never wait for a writer (WAL)."""
        return self.db.local

    def ping(self) -> None:
        self.db.ping()

    def close(self) -> None:
        self.db.dispose()
