"""Request and response models: the OpenAPI document built from them is the public contract."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from hm2bp_core.spec import TrainingSpec

JobState = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]


class ErrorItem(BaseModel):
    field: str = Field(description="dotted path of the offending field, e.g. spec.training.epochs")
    message: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: a sentence, and for validation errors the fields at fault."""

    detail: str
    errors: list[ErrorItem] = Field(default_factory=list)


class Dataset(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="ds_... for uploads, builtin:NAME for built-ins")
    name: str
    format: str = Field(description="npz, idx, nmnist or builtin")
    kind: str = Field(description="image or spikes")
    num_samples: int
    num_train: int
    num_test: int
    num_classes: int
    input_shape: list[int]
    sha256: str | None
    size_bytes: int | None
    created_at: datetime | None


class DatasetList(BaseModel):
    items: list[Dataset]


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(min_length=1, max_length=64, description="builtin:NAME or an uploaded dataset's id")
    spec: TrainingSpec = Field(default_factory=TrainingSpec, description="the training spec (paper defaults when omitted)")
    name: str | None = Field(None, max_length=256)
    tags: list[str] = Field(default_factory=list, max_length=32)
    webhook_url: AnyHttpUrl | None = None


class JobError(BaseModel):
    reason: str = Field(description="diverged, invalid_input, out_of_memory, platform_fault or internal_error")
    message: str
    log_tail: list[str] = Field(default_factory=list)


class Job(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    state: JobState
    dataset: str
    spec: dict[str, Any] = Field(description="the resolved spec, every default filled in")
    tags: list[str]
    queue: str
    progress: dict[str, Any] | None = Field(description="the latest progress event (epoch, step, loss, ETA...)")
    metrics: dict[str, Any] | None = Field(description="summary: latest/best test accuracy; the final metrics once done")
    error: JobError | None
    attempts: int
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobPage(BaseModel):
    items: list[Job]
    total: int
    limit: int
    offset: int


class Transition(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_state: str | None
    to_state: str
    reason: str
    at: datetime


class Metrics(BaseModel):
    epochs: list[dict[str, Any]] = Field(description="one row per finished epoch, as in metrics.json")
    final: dict[str, Any] | None
    transitions: list[Transition]


class LogLine(BaseModel):
    id: int
    at: datetime
    message: str


class Logs(BaseModel):
    items: list[LogLine]


class Artifact(BaseModel):
    name: str
    size_bytes: int


class ArtifactList(BaseModel):
    items: list[Artifact]


class EventEnvelope(BaseModel):
    """One job event; ``id`` is the cursor for ``?after=`` and SSE ``Last-Event-ID``."""

    id: int
    type: Literal["state", "progress", "epoch", "log"]
    at: datetime
    data: dict[str, Any]


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


class Session(BaseModel):
    user: str = Field(description="the signed-in user's name")


class SpecDefaults(BaseModel):
    defaults: dict[str, Any] = Field(description="TrainingSpec() resolved: the paper's defaults")
    json_schema: dict[str, Any] = Field(description="the spec's JSON schema (types, enums, bounds, descriptions)")
