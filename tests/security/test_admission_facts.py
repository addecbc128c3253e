"""The fit check holds facts, never arrays (issue 20 item 5): an upload is read once to record its
facts (shapes, classes, sizes) on its row; afterwards nothing in the process keeps its arrays, fit
checks read only the row (they work with the stored file gone), and a deleted dataset is
forgotten at once. An upload that expands ~200-fold (zeros) makes any kept array easy to see."""

from __future__ import annotations

import gc
import hashlib

import numpy as np
import pytest
from service.harness import TINY_SPEC, npz_bytes

from api.routes.datasets import delete_dataset
from hm2bp_core.spec import TrainingSpec
from hm2bp_service.datasets import UnknownDataset, facts_for
from hm2bp_service.lifecycle import misfit
from hm2bp_service.services import Services
from hm2bp_service.settings import Settings
from hm2bp_service.store import migrate
from hm2bp_service.uploads import Upload, accept_upload

LARGE = 1 << 20


@pytest.fixture
def services(tmp_path):
    settings = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0", max_compression_ratio=1000)
    migrate(settings.sqlalchemy_url)
    found = Services.from_settings(settings)
    yield found
    found.close()


def large_arrays() -> set[int]:
    gc.collect()
    return {id(item) for item in gc.get_objects() if type(item) is np.ndarray and item.nbytes >= LARGE}


def test_uploads_leave_facts_and_no_arrays(services):
    x = np.zeros((3000, 8, 8), dtype=np.float32)  # 768 KB a split part, compressed to a few KB
    content = npz_bytes(x_train=np.concatenate([x, x]), y_train=np.arange(6000) % 10, x_test=x,
                        y_test=np.arange(3000) % 10)
    del x
    services.settings.staging_dir.mkdir(parents=True)
    staged = services.settings.staging_dir / "zeros.upload"
    staged.write_bytes(content)
    user = services.store.users.ensure("alice")
    before = large_arrays()
    record, created = accept_upload(services, user.id, Upload(staged, hashlib.sha256(content).hexdigest(),
                                                              len(content), "zeros.npz"))
    assert created and record.num_train == 6000 and record.input_shape == [8, 8]
    assert large_arrays() - before == set()  # nothing holds the arrays it read

    services.artifacts.remove(record.storage_key)  # fit checks read the row, not the file
    spec = TrainingSpec.model_validate({**TINY_SPEC, "network": {"layers": [
        {"type": "dense", "units": 10, "threshold": 5}]}})
    facts = facts_for(record.id, user.id, services.store, services.settings)
    assert facts.num_train == 6000 and misfit(spec, facts) is None

    delete_dataset(record.id, user, services)
    with pytest.raises(UnknownDataset):
        facts_for(record.id, user.id, services.store, services.settings)
    assert large_arrays() - before == set()
