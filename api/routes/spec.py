"""``/v1/spec``: the training spec's defaults and schema, for forms that build a job."""

from __future__ import annotations

from functools import lru_cache

from fastapi import APIRouter

from hm2bp_core.spec import TrainingSpec

from .. import schemas
from ..deps import UserDep

router = APIRouter(prefix="/v1/spec", tags=["spec"])


@lru_cache(maxsize=1)
def _defaults() -> schemas.SpecDefaults:
    return schemas.SpecDefaults(defaults=TrainingSpec().to_dict(), json_schema=TrainingSpec.model_json_schema())


@router.get("", response_model=schemas.SpecDefaults, responses={401: {"model": schemas.ErrorBody}})
def spec_defaults(_: UserDep) -> schemas.SpecDefaults:
    """The paper's defaults (what ``POST /v1/jobs`` fills in) and the JSON schema of the spec."""
    return _defaults()
