"""``/v1/spec``: the training spec's defaults and schema, for forms that build a job, and the
suggested spec of each built-in dataset that has an example: ``examples/NAME.yaml`` of the
repository is the spec for ``builtin:NAME`` (``examples/digits.yaml`` for ``builtin:digits``), the one
place its values live; the dashboard's form switches to it when that dataset is picked."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter

from hm2bp_core.data import BUILTINS
from hm2bp_core.spec import TrainingSpec, load_spec

from .. import schemas
from ..deps import UserDep

router = APIRouter(prefix="/v1/spec", tags=["spec"])
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def dataset_examples(folder: Path = EXAMPLES) -> dict[str, dict]:
    """``{"builtin:NAME": resolved spec}`` for each built-in with an ``NAME.yaml`` in ``folder``
    (none when the folder is absent, as in an install without the repository)."""
    return {f"builtin:{name}": load_spec(folder / f"{name}.yaml").to_dict()
            for name in BUILTINS if (folder / f"{name}.yaml").is_file()}


@lru_cache(maxsize=1)
def _defaults() -> schemas.SpecDefaults:
    return schemas.SpecDefaults(defaults=TrainingSpec().to_dict(), json_schema=TrainingSpec.model_json_schema(),
                                examples=dataset_examples())


@router.get("", response_model=schemas.SpecDefaults, responses={401: {"model": schemas.ErrorBody}})
def spec_defaults(_: UserDep) -> schemas.SpecDefaults:
    """The paper's defaults (what ``POST /v1/jobs`` fills in), the JSON schema of the spec, and the
    suggested spec of the built-in datasets that have an example."""
    return _defaults()
