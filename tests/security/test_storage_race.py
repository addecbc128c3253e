"""Race-free shared storage (issue 20 item 6): dataset files are stored once per content and shared
by the users who uploaded them; an upload by one user racing a delete of the same content by
another never leaves a record whose file is gone.

Each round: alice has the dataset; alice deletes it (the route's own function) while bob uploads
the same file (the service's upload path), bob's start jittered across the length of an upload so
that the delete lands in every phase of it. After each round every surviving record's file must
exist and read. Real SQLite and PostgreSQL, real files; no HTTP (200 rounds over it would take
minutes on a small machine)."""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
import time

import numpy as np
import pytest
from service.harness import npz_bytes, postgres_schema

from api.routes.datasets import delete_dataset
from hm2bp_core.data import load_dataset
from hm2bp_service.services import Services
from hm2bp_service.settings import Settings
from hm2bp_service.store import migrate
from hm2bp_service.uploads import Upload, accept_upload

ROUNDS = 200
RNG = np.random.default_rng(0)
CONTENT = npz_bytes(x_train=RNG.integers(0, 256, (60, 6, 6), dtype=np.uint8), y_train=np.arange(60) % 3,
                    x_test=RNG.integers(0, 256, (30, 6, 6), dtype=np.uint8), y_test=np.arange(30) % 3)


@pytest.fixture(params=["sqlite", "postgresql"])
def services(request, tmp_path):
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_schema()) if request.param == "postgresql" else None
        settings = Settings(data_dir=tmp_path, database_url=url, redis_url="redis://127.0.0.1:1/0")
        migrate(settings.sqlalchemy_url)
        found = Services.from_settings(settings)
        stack.callback(found.close)
        yield found


def staged(services: Services, name: str) -> Upload:
    services.settings.staging_dir.mkdir(parents=True, exist_ok=True)
    path = services.settings.staging_dir / f"{name}-{time.monotonic_ns()}.upload"
    path.write_bytes(CONTENT)
    return Upload(path, hashlib.sha256(CONTENT).hexdigest(), len(CONTENT), "shared.npz")


def assert_every_record_reads(services: Services, users) -> int:
    records = [record for user in users for record in services.store.datasets.of_user(user.id)]
    for record in records:
        local = services.artifacts.local_path(record.storage_key)
        assert local is not None and local.is_file(), f"{record.id} of user {record.user_id}: its file is gone"
        assert load_dataset(local).facts().num_train == 60
    return len(records)


def test_upload_racing_a_delete_of_the_same_content_never_loses_the_file(services):
    alice, bob = services.store.users.ensure("alice"), services.store.users.ensure("bob")
    started = time.monotonic()
    accept_upload(services, bob.id, staged(services, "bob"))
    upload_seconds = time.monotonic() - started
    delete_dataset(services.store.datasets.by_sha256(bob.id, hashlib.sha256(CONTENT).hexdigest()).id, bob, services)
    jitter = random.Random(0)
    survivors = 0
    for _ in range(ROUNDS):
        first, _created = accept_upload(services, alice.id, staged(services, "alice"))
        barrier = threading.Barrier(2)
        failures: list[BaseException] = []

        def run(action, delay: float, barrier=barrier, failures=failures) -> None:
            try:
                barrier.wait()
                time.sleep(delay)
                action()
            except BaseException as exc:  # reported below, in the test's thread
                failures.append(exc)

        threads = [threading.Thread(target=run, args=(lambda first=first: delete_dataset(first.id, alice, services),
                                                      jitter.uniform(0, 1.5 * upload_seconds))),
                   threading.Thread(target=run, args=(lambda: accept_upload(services, bob.id, staged(services, "bob")),
                                                      0.0))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not failures, failures
        survivors += assert_every_record_reads(services, (alice, bob))
        for record in services.store.datasets.of_user(bob.id):
            delete_dataset(record.id, bob, services)
        assert not services.artifacts.exists(first.storage_key)  # the last reference removes the file
    assert survivors == ROUNDS  # bob's record survived every round
