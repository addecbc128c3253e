"""The training spec: one validated document that describes an HM2-BP run.

Every field has the paper's default (the authors' MNIST 784-800-10 configuration,
``Config/SpikingMnistConfig.txt``; algorithm section 10.1). Unknown fields are
rejected with a message naming them. The names of the sections ``network``, ``neuron``,
``encoding``, ``output`` and ``training`` and their fields are a public contract: the
service stores this document with every job and clients send it.

``hm2bp`` holds the named switches for each heuristic of the authors' code (the table of algorithm section 1.3):
all on by default (mode ``faithful``), each can be turned off to see what it does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator


class _Strict(BaseModel):
    """Base for every spec section: unknown fields are an error, values are re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class DenseLayer(_Strict):
    """Fully connected spiking layer; the last layer of ``network.layers`` is the output layer."""

    type: Literal["dense"] = "dense"
    units: int = Field(gt=0, le=100_000, description="number of LIF neurons")
    threshold: float = Field(gt=0, description="firing threshold nu of the layer")
    init_range: float = Field(
        1.0, gt=0, description="weights start uniform in [-init_range, +init_range] (algorithm section 7.4)"
    )


class ConvLayer(_Strict):
    """Spiking convolution (valid cross-correlation by default), shared weights per map."""

    type: Literal["conv"] = "conv"
    channels: int = Field(gt=0, le=4096)
    kernel: int = Field(gt=0, le=64)
    stride: int = Field(1, gt=0, le=64)
    padding: int = Field(0, ge=0, le=64)
    threshold: float = Field(gt=0)
    init_range: float = Field(0.5, gt=0)


class PoolLayer(_Strict):
    """Spiking pooling: unit weights over size x size windows (stride = size), LIF neurons."""

    type: Literal["pool"] = "pool"
    size: int = Field(2, gt=0, le=64)
    threshold: float = Field(gt=0)


def _layer_type(value: Any) -> str:
    """The layer's ``type``; a layer given without one is dense."""
    return value.get("type", "dense") if isinstance(value, dict) else getattr(value, "type", "dense")


Layer = Annotated[
    Annotated[DenseLayer, Tag("dense")] | Annotated[ConvLayer, Tag("conv")] | Annotated[PoolLayer, Tag("pool")],
    Discriminator(_layer_type, custom_error_type="layer_type",
                  custom_error_message="type must be one of 'dense', 'conv', 'pool'"),
]


def _paper_mlp() -> list[Layer]:
    return [DenseLayer(units=800, threshold=20.0), DenseLayer(units=10, threshold=8.0)]


class Network(_Strict):
    layers: list[Layer] = Field(default_factory=_paper_mlp, min_length=1, max_length=64)
    input_shape: list[int] | None = Field(
        None, max_length=8,
        description="shape of one input sample; taken from the dataset when omitted, checked against it when given",
    )

    @model_validator(mode="after")
    def _output_is_dense(self) -> Network:
        if not isinstance(self.layers[-1], DenseLayer):
            raise ValueError("the last layer (the output layer) must be of type 'dense'")
        return self


class Neuron(_Strict):
    """LIF neuron with a first-order synapse (algorithm section 2); times in simulation steps."""

    tau_m: float = Field(64.0, gt=1.0, description="membrane time constant (steps)")
    tau_s: float = Field(8.0, gt=1.0, description="synaptic time constant (steps)")
    refractory: int = Field(2, ge=0, le=1000, description="absolute refractory period T_ref (steps)")

    @model_validator(mode="after")
    def _distinct_constants(self) -> Neuron:
        if self.tau_m == self.tau_s:
            raise ValueError("tau_m and tau_s must differ (the PSP kernel divides by 1 - tau_s/tau_m)")
        return self


class Encoding(_Strict):
    """How inputs become spike trains (algorithm sections 8.1-8.2).

    ``rate``: Bernoulli spikes with p = intensity * max_rate per step, no spike at t = 0, drawn
    once per sample from the run's seed. ``spikes``: the dataset already holds spike rasters
    (event data binned to ``time_steps`` frames).
    """

    kind: Literal["rate", "spikes"] = "rate"
    time_steps: int = Field(400, ge=2, le=100_000)
    max_rate: float = Field(1 / 5.5, gt=0, le=1.0, description="spike probability per step at intensity 1")


class Augmentation(_Strict):
    """Elastic distortion, scaling and rotation of image inputs (algorithm section 8.3; the authors' CNN run).

    When enabled, a fresh spike train is drawn for every presentation of a training sample (test
    trains stay fixed). Off by default; the paper's CNN config uses scale 12 %, rotation 12 degrees
    and distortion 3.4 with one random field per epoch.
    """

    enabled: bool = False
    scale: float = Field(0.12, ge=0, le=1, description="maximum extra scaling per axis (fraction)")
    rotation: float = Field(12.0, ge=0, le=180, description="maximum rotation (degrees)")
    distortion: float = Field(3.4, ge=0, le=50, description="elastic displacement scale (pixels)")
    per: Literal["epoch", "sample"] = Field("epoch", description="one random field per epoch (authors) or per sample")


class Output(_Strict):
    """Dead-zone count targets of the output layer (algorithm section 4.1) and its lateral inhibition (2.4, 4.4)."""

    desired_count: float = Field(35.0, ge=0)
    undesired_count: float = Field(5.0, ge=0)
    margin: float = Field(5.0, ge=0)
    lateral_inhibition: float = Field(
        1.0, ge=0, description="strength w0 of the fixed -w0 connection between output neurons; 0 = none"
    )


class Regularization(_Strict):
    """Exponential weight penalty (algorithm section 7.1): reg = lambda*beta*(w/W)*exp(beta*(mean((w/W)^2) - 1))."""

    lambda_: float = Field(10.0, ge=0, alias="lambda")
    beta: float = Field(0.04, ge=0)
    weight_limit: float = Field(8.0, gt=0)

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)


class BatchSchedule(_Strict):
    """How a run with ``batch_size`` > 1 still learns (docs/cnn_batches.md); the default changes nothing.

    Adam moves every weight by about lr per step whatever the batch, so a batch of B takes B times
    fewer, not larger, steps per epoch. A deep CNN whose upper layers start silent is woken up only
    by the silent-neuron fallbacks, about lr per step each, and at batch B that takes B times as
    many samples. ``warmup_samples``: the run's first that many training samples are presented one
    at a time (batch 1, at lr, the authors' setting), then batches of ``batch_size``.
    ``lr_scaling``: the lr of each step of a batch of B samples (after the warm-up) is lr x B
    (``linear``) or lr x sqrt(B) (``sqrt``), the lr schedule applied on top.
    """

    warmup_samples: int = Field(0, ge=0, le=10_000_000, description="first samples of the run at batch 1")
    lr_scaling: Literal["none", "linear", "sqrt"] = Field(
        "none", description="lr of a batch of B samples: lr (none), lr*B (linear) or lr*sqrt(B) (sqrt)")

    def factor(self, batch: int) -> float:
        """The lr multiplier of a step over ``batch`` samples."""
        return {"none": 1.0, "linear": float(batch), "sqrt": batch**0.5}[self.lr_scaling]


class Training(_Strict):
    epochs: int = Field(200, ge=1, le=100_000)
    batch_size: int = Field(1, ge=1, le=65_536, description="1 = update after every sample, as the authors do")
    batch_schedule: BatchSchedule = Field(default_factory=BatchSchedule)
    optimizer: Literal["adam"] = "adam"
    lr: float = Field(1e-3, gt=0, le=10.0)
    lr_schedule: Literal["inv_sqrt_epoch", "constant", "cosine"] = Field(
        "inv_sqrt_epoch",
        description="inv_sqrt_epoch: lr for 0-based epoch e < 2, lr/sqrt(e) after (the authors, algorithm section "
        "7.3); constant: lr throughout; cosine: lr * (1 + cos(pi * x)) / 2 at each update, x the fraction of "
        "the run's updates done (from lr down to 0 at the last update of the last epoch)",
    )
    seed: int = Field(0, ge=0, lt=2**63)
    device: Literal["auto", "cpu", "cuda"] | Annotated[str, Field(max_length=16, pattern=r"^(auto|cpu|cuda(:\d+)?)$")] \
        = "auto"
    max_train_samples: int | None = Field(None, ge=1)
    max_test_samples: int | None = Field(None, ge=1)
    validation_split: float = Field(
        0.0, ge=0.0, lt=1.0, description="fraction of the training set held out for model selection"
    )
    regularization: Regularization = Field(default_factory=Regularization)
    precision: Literal["float32", "float64"] = Field(
        "float32", description="dtype of the weights, optimizer state and every computation on them "
        "(the authors: float32)")


class Hm2bp(_Strict):
    """Named switches for the heuristics of the authors' code (algorithm section 1.3); all on = faithful."""

    mode: Literal["faithful", "custom"] = "faithful"
    refractory_shift: bool = Field(True, description="shift pre spikes by +T_ref in the S-PSP (algorithm section 3.2)")
    psp_window: bool = Field(True, description="count only pre spikes in the 4*tau_m steps before a post spike")
    silent_post_spsp: float = Field(0.1, ge=0, description="e_ij for a silent post neuron with an active input")
    ratio_fallbacks: bool = Field(True, description="dE/da_pre = 1 and side-effect ratio 0.5 for silent neurons")
    side_effect: bool = Field(True, description="the (1 + s_i) factor on the weight gradient (algorithm section 5.3)")
    dummy_label_train: bool = Field(
        True, description="regular spike train for a silent label neuron (algorithm section 4.3)"
    )
    lateral_factor: bool = Field(True, description="the lateral-inhibition factor L_j on output gradients")
    boosting: bool = Field(True, description="per-epoch re-weighting of misclassified samples (algorithm section 7.5)")
    shuffle: Literal["swaps", "full", "none"] = Field(
        "swaps", description="per-epoch order: 5000 random pair swaps (authors), a full permutation, or none"
    )

    @model_validator(mode="after")
    def _mode_matches_switches(self) -> Hm2bp:
        default = Hm2bp.model_construct()
        changed = [
            name
            for name in Hm2bp.model_fields
            if name != "mode" and getattr(self, name) != getattr(default, name)
        ]
        if self.mode == "faithful" and changed:
            raise ValueError(
                f"mode 'faithful' keeps every heuristic of the authors' code; set mode: custom to change {changed}"
            )
        return self


class TrainingSpec(_Strict):
    """A whole run: network, neuron, encoding, output targets, training and HM2-BP switches."""

    network: Network = Field(default_factory=Network)
    neuron: Neuron = Field(default_factory=Neuron)
    encoding: Encoding = Field(default_factory=Encoding)
    augmentation: Augmentation = Field(default_factory=Augmentation)
    output: Output = Field(default_factory=Output)
    training: Training = Field(default_factory=Training)
    hm2bp: Hm2bp = Field(default_factory=Hm2bp)

    @property
    def num_classes(self) -> int:
        return cast(DenseLayer, self.network.layers[-1]).units  # Network._output_is_dense

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, by_alias=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def load_spec(source: str | Path | dict[str, Any] | None) -> TrainingSpec:
    """Read a spec from a dict, a JSON or YAML file, or a JSON/YAML string; ``None`` gives the defaults."""
    if source is None:
        return TrainingSpec()
    if isinstance(source, dict):
        return TrainingSpec.model_validate(source)
    text = str(source)
    path = Path(source) if not isinstance(source, str) or "\n" not in source else None
    if path is not None and path.suffix.lower() in {".json", ".yaml", ".yml"}:
        text = path.read_text()
    data = yaml.safe_load(text) if not str(text).lstrip().startswith("{") else json.loads(text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError("a training spec must be a mapping (JSON object / YAML mapping)")
    return TrainingSpec.model_validate(data)
