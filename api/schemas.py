"""Request and response models: the OpenAPI document built from them is the public contract."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    UrlConstraints,
    model_validator,
)

from hm2bp_core.spec import TrainingSpec
from hm2bp_service.states import JobState


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


# Every string and list of a request is bounded (tests/security/test_limits_schema.py walks the
# OpenAPI document for any that is not): a request's size is bounded before the body limit is.
NAME_CHARS, TAG_CHARS, MAX_TAGS, DATASET_CHARS = 256, 64, 32, 64
Name = Annotated[str, StringConstraints(max_length=NAME_CHARS), AfterValidator(_no_nul)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=TAG_CHARS), AfterValidator(_no_nul)]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS, description=f"at most {MAX_TAGS} tags of at most "
                                  f"{TAG_CHARS} characters")]
DatasetRef = Annotated[str, StringConstraints(min_length=1, max_length=DATASET_CHARS), AfterValidator(_no_nul),
                       Field(description="builtin:NAME or an uploaded dataset's id")]
GridKey = Annotated[str, StringConstraints(min_length=1, max_length=128), AfterValidator(_no_nul)]
GridText = Annotated[str, StringConstraints(max_length=256), AfterValidator(_no_nul)]
GridScalar = StrictBool | int | float | GridText | None
GridObject = Annotated[dict[Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_no_nul)],
                            GridScalar], Field(max_length=16)]
GridValue = GridScalar | GridObject | Annotated[list[GridScalar | GridObject], Field(max_length=64)]

WebhookUrl = Annotated[AnyHttpUrl, UrlConstraints(max_length=2048), Field(
    description="http(s) URL that receives a signed POST when the job ends (see GET /v1/webhook-secret)")]


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
    time_steps: int | None = Field(None, description="steps per sample of spike data (null for images)")
    sha256: str | None
    size_bytes: int | None
    created_at: datetime | None
    available: bool = Field(True, description="a job may use it now (false: a built-in whose files must be put "
                            "on the service first; see note)")
    note: str | None = Field(None, description="for a built-in not on the service yet: what its first job does, "
                             "or how to provide its files")
    duplicate: bool = Field(False, description="in an upload's answer (200): the same file was uploaded before, "
                            "and this is that earlier record, under its first name (one record per file)")


class DatasetList(BaseModel):
    items: list[Dataset]


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: DatasetRef
    spec: TrainingSpec = Field(default_factory=TrainingSpec,
                               description="the training spec (paper defaults when omitted)")
    name: Name | None = None
    tags: Tags = Field(default_factory=list)
    webhook_url: WebhookUrl | None = None


class JobError(BaseModel):
    reason: str = Field(description="diverged, invalid_input, out_of_memory, platform_fault or internal_error")
    message: str
    log_tail: list[str] = Field(default_factory=list)


class Resources(BaseModel):
    cpu_percent: float = Field(description="CPU use of the training process and its helpers, percent of one core")
    rss_mib: float = Field(description="resident memory of the training process and its helpers, MiB")
    sampled_at: str = Field(description="when it was sampled (ISO 8601, UTC)")


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
    resources: Resources | None = Field(None, description="CPU and memory of the training process while it runs "
                                        "(sampled every few seconds by its worker); null otherwise")
    metrics: dict[str, Any] | None = Field(
        description="summary: latest/best test accuracy; the final metrics once done")
    error: JobError | None
    attempts: int
    cancel_requested: bool
    webhook_url: str | None = None
    sweep_id: str | None = Field(None, description="the sweep that created the job")
    sweep_params: dict[str, Any] | None = Field(None, description="the job's grid point in its sweep")
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
    epochs: list[dict[str, Any]] = Field(description="one row per finished epoch, as in metrics.json: "
                                         "train_accuracy is the online accuracy over the epoch (each sample's vote "
                                         "before its update, as the authors log it), train_accuracy_per_1000 the "
                                         "same per 1,000 samples, test_accuracy after the epoch")
    final: dict[str, Any] | None
    transitions: list[Transition]
    reference: dict[str, Any] | None = Field(
        None, description="when the job trains a model of the paper's (same network, neuron, encoding, output and "
        "augmentation as one of its rows): {row, runs: {name: the authors' logged run, per epoch with the log "
        "line each number was read from}}; else null")


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
    examples: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="dataset id -> suggested resolved spec (examples/NAME.yaml of builtin:NAME)")


class WebhookSecret(BaseModel):
    secret: str = Field(description="the key of the HMAC-SHA256 in X-HM2BP-Signature of your webhook deliveries")
    signature: str = Field("X-HM2BP-Signature: sha256=hex(HMAC-SHA256(secret, X-HM2BP-Timestamp + '.' + body))",
                           description="how deliveries are signed (hm2bp_client.verify_webhook checks them)")


class WebhookDelivery(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="also sent as X-HM2BP-Delivery; the same on every retry")
    event: str = Field(description="job.succeeded, job.failed, job.cancelled or job.pruned")
    url: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status: int | None = Field(description="the receiver's HTTP status on the last attempt")
    last_error: str | None
    next_attempt_at: datetime | None = Field(description="when a pending delivery is tried again")
    created_at: datetime
    delivered_at: datetime | None


class WebhookDeliveryList(BaseModel):
    items: list[WebhookDelivery]


class SearchRange(BaseModel):
    """A range of a spec field: a float (or with ``integer`` an int) from ``low`` to ``high``,
    drawn uniformly, or on a log scale with ``log``."""

    model_config = ConfigDict(extra="forbid")

    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> SearchRange:
        if not self.low < self.high:
            raise ValueError("low must be below high")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low above 0")
        return self


class SearchChoice(BaseModel):
    """The values a spec field may take (numbers, strings, booleans)."""

    model_config = ConfigDict(extra="forbid")

    choices: list[Annotated[str, Field(max_length=256)] | bool | int | Annotated[float, Field(
        allow_inf_nan=False)]] = Field(min_length=1, max_length=100)


class SweepCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: DatasetRef
    spec: TrainingSpec = Field(default_factory=TrainingSpec, description="the base spec every point starts from")
    method: Literal["grid", "random", "tpe"] = Field(
        "grid", description="grid: one job per combination of ``grid``; random or tpe (Optuna's TPE sampler): "
                            "``budget`` trials drawn from ``space``, at most ``max_concurrent`` at once")
    grid: dict[GridKey, Annotated[list[GridValue], Field(min_length=1, max_length=100)]] | None = Field(
        None, min_length=1, max_length=16,
        description='method grid: spec field path -> values, e.g. {"training.lr": [1e-3, 5e-4], '
                    '"network.layers[0].units": [400, 800]}; one job per combination')
    space: dict[GridKey, SearchRange | SearchChoice] | None = Field(
        None, min_length=1, max_length=16,
        description='method random or tpe: spec field path -> {low, high, log?, integer?} or {choices}, e.g. '
                    '{"training.lr": {"low": 1e-4, "high": 1e-2, "log": true}}')
    budget: int | None = Field(None, ge=1, le=1000, description="random or tpe: how many trials in all")
    max_concurrent: int = Field(2, ge=1, le=64, description="random or tpe: trials queued or running at once")
    objective: Literal["test_accuracy", "val_accuracy"] = Field(
        "test_accuracy", description="the epoch metric maximized (val_accuracy needs training.validation_split)")
    pruner: Literal["none", "median", "halving"] | None = Field(
        None, description="stop trials that fall behind after an epoch (state pruned): median (Optuna's "
                          "MedianPruner) or halving (SuccessiveHalvingPruner, rungs at epochs 1, 3, 9...); "
                          "default median for random and tpe, none for grid")
    prune_startup_trials: int = Field(2, ge=0, le=100, description="median: finished trials before any is pruned")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="random or tpe: the sampler's seed")
    name: Name | None = None
    tags: Tags = Field(default_factory=list)
    webhook_url: WebhookUrl | None = None

    def search(self) -> dict[str, Any]:
        """The search's record (``sweeps.search``): what ``hm2bp_service.search`` reads."""
        return {"method": self.method, "objective": self.objective,
                "pruner": self.pruner or ("none" if self.method == "grid" else "median"),
                "prune_startup_trials": self.prune_startup_trials, "seed": self.seed,
                "budget": self.budget, "max_concurrent": self.max_concurrent,
                "space": {key: bounds.model_dump() for key, bounds in (self.space or {}).items()}}


class SweepJob(BaseModel):
    id: str
    name: str
    state: JobState
    params: dict[str, Any] = Field(description="this job's grid point or trial's parameters: field path -> value")
    best_test_accuracy: float | None
    objective: float | None = Field(None, description="the best value of the sweep's objective over its epochs")
    epochs: int = Field(0, description="epochs finished")
    progress: dict[str, Any] | None = None
    reason: str | None = Field(None, description="why it was pruned or failed")


class SweepBest(BaseModel):
    job_id: str
    params: dict[str, Any]
    best_test_accuracy: float
    objective: float | None = None


class Sweep(BaseModel):
    id: str
    name: str
    dataset: str
    spec: dict[str, Any] = Field(description="the resolved base spec")
    grid: dict[str, list[Any]]
    search: dict[str, Any] | None = Field(
        None, description="method, space, budget, max_concurrent, objective, pruner, seed (null: a plain grid)")
    state: Literal["active", "done"] = Field(
        description="done once every job has ended (a search: and its budget is used, or it was cancelled)")
    counts: dict[str, int] = Field(description="jobs by state")
    jobs: list[SweepJob] = Field(description="one per grid point or trial, in the order they were made")
    best: SweepBest | None = Field(
        description="once done: the succeeded job with the best objective (test accuracy by default)")
    leader: SweepBest | None = Field(None, description="meanwhile: the job with the best objective so far")
    created_at: datetime


class SweepPage(BaseModel):
    items: list[Sweep]
    total: int
    limit: int
    offset: int


class WorkerDevice(BaseModel):
    kind: Literal["cuda", "cpu"]
    name: str | None = Field(description="GPU or CPU model (null but for an admin)")
    memory_bytes: int | None = Field(None, description="memory of the first GPU")
    count: int | None = Field(None, description="GPUs visible to the worker")
    cores: int | None = Field(None, description="CPU cores, for a CPU worker")


class WorkerJob(BaseModel):
    id: str | None = Field(description="the job's id when it is the caller's, else null")
    state: JobState


class Worker(BaseModel):
    name: str = Field(description="Celery node name, NAME@HOST (for an admin; else 'worker N')")
    host: str | None = Field(description="null but for an admin")
    pid: int | None = Field(description="null but for an admin")
    queues: list[str]
    concurrency: int
    device: WorkerDevice | None = Field(description="null until the worker has probed its device")
    started_at: datetime
    last_seen: datetime
    jobs: list[WorkerJob] = Field(description="the jobs it is running now")


class WorkerList(BaseModel):
    items: list[Worker]


class Quotas(BaseModel):
    max_queued_jobs: int = Field(description="queued jobs one user may have at once (429 beyond)")
    max_running_jobs: int = Field(description="jobs of one user that run at once; the others wait")
    max_stored_bytes: int = Field(description="total size of one user's uploaded datasets (422 beyond)")


class Capabilities(BaseModel):
    devices: list[Literal["cpu", "cuda"]] = Field(description="the training.device values a job can run with now")
    workers: int = Field(description="live workers")
    max_job_memory_mib: int | None = Field(description="the largest memory limit of a training process on a live "
                                           "worker; jobs whose estimate exceeds it are refused; null: no worker")
    quotas: Quotas
