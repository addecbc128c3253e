"""The trainer: epochs of HM2-BP updates, evaluation, checkpoint/resume, progress callbacks.

One epoch (algorithm sections 7.2-7.6):

1. order the training samples (authors: 5000 random pair swaps of the running order);
2. for each batch: encode, simulate, compute the HM2-BP gradients (per-sample in parallel, mean
   over the batch), one Adam step with lr = lr0 for epochs 0 and 1, lr0 / sqrt(e) after (or another
   ``training.lr_schedule``, ``learning_rate``), times ``training.batch_schedule``'s factor of the batch
   size (the batches: ``epoch_batches``);
3. boosting: every misclassified sample n of class c gets beta_n *= exp(err_c / 20), with
   err_c = sum of beta over misclassified samples of c / sum of beta over all samples of c;
4. evaluate on the test set (and the validation split, if any), write a checkpoint.

Epoch metrics: ``train_accuracy`` is the online accuracy, as the authors log it: each training
sample's prediction from its own forward pass, before its update, over the epoch's samples;
``train_accuracy_per_1000`` the same per consecutive block of ONLINE_BLOCK samples (the last block
may be shorter); ``loss`` the mean dead-zone cost, ``logged_loss`` the authors' logged cost (with
the dummy label train counted, ``objective.logged_cost``); ``activation_sparsity``,
``synaptic_operations`` (per sample) and ``spikes_per_sample`` (per layer) NeuroBench's metrics of
the epoch's test-set evaluation (``spiking_metrics``).

Everything random comes from the run's seed: the initial weights, a numpy generator for the
sample order and split (its state is checkpointed), and per-sample spike trains seeded by
(seed, split, index). A resumed run therefore ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .augment import random_grids, warp
from .checkpoint import (
    load_checkpoint,
    load_model,
    optimizer_tensors,
    restore_optimizer,
    save_checkpoint,
    save_model,
)
from .data import Dataset, DatasetFacts
from .encoding import rate_encode
from .geometry import layer_shapes
from .kernels import kernel_path
from .network import SpikingNetwork
from .objective import logged_cost, predict
from .spec import TrainingSpec
from .spiking_metrics import SpikingMeter

Callback = Callable[[dict[str, Any]], None]
PROGRESS_SECONDS = 1.0  # a progress event at most this often (and at each epoch's first and last batch)
SHUFFLE_SWAPS = 5000  # the authors' cuMatrixVector::shuffle
ONLINE_BLOCK = 1000  # samples per entry of an epoch's train_accuracy_per_1000
EVAL_REPORT_SECONDS = 30.0  # a log line this often while a test (or validation) pass runs


class TrainingCancelled(Exception):
    """should_stop() returned True; the last checkpoint is the one of the last finished epoch."""


class TrainingDiverged(RuntimeError):
    """The weights or the loss became NaN or infinite."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("training.device: CUDA was requested but no CUDA device is available")
    return torch.device(name)


def check_fit(spec: TrainingSpec, dataset: DatasetFacts) -> None:
    """Raise ValueError naming the spec field when a dataset with these facts cannot be trained
    with ``spec`` (``Dataset.facts()``; the service checks the facts it recorded at upload): input
    shape, classes, encoding, augmentation, and every conv and pool layer's window against the
    shape that reaches it (``geometry.layer_shapes``)."""
    if spec.network.input_shape is not None and tuple(spec.network.input_shape) != tuple(dataset.input_shape):
        raise ValueError(
            f"network.input_shape is {list(spec.network.input_shape)} but the dataset's samples have shape "
            f"{list(dataset.input_shape)}"
        )
    if spec.num_classes != dataset.num_classes:
        raise ValueError(
            f"network.layers[-1].units is {spec.num_classes} but the dataset has {dataset.num_classes} classes"
        )
    if dataset.kind == "spikes":
        if spec.encoding.kind != "spikes":
            raise ValueError("encoding.kind must be 'spikes' for a dataset of spike rasters")
        if dataset.time_steps is not None and dataset.time_steps != spec.encoding.time_steps:
            raise ValueError(f"encoding.time_steps is {spec.encoding.time_steps} but the dataset's rasters have "
                             f"{dataset.time_steps} steps")
    elif spec.encoding.kind != "rate":
        raise ValueError("encoding.kind must be 'rate' for a dataset of images")
    layer_shapes(spec.network.layers, dataset.input_shape)  # conv/pool windows that fit what reaches them
    if spec.augmentation.enabled and (dataset.kind != "image" or len(dataset.input_shape) != 2):
        raise ValueError(f"augmentation.enabled needs 2-D images; the dataset has {dataset.kind} samples of "
                         f"shape {list(dataset.input_shape)}")


@contextmanager
def flushed_denormals() -> Iterator[None]:
    """Subnormal floats (|x| < 1.2e-38 in float32) read and computed as 0 while training, as on the authors'
    GPU (their ``--use_fast_math`` build flushes them). Adam's first moment of a weight whose input has gone
    quiet decays by 0.9 per update into that range, where the CPU computes 10-40x slower (the fused step
    took 19 ms instead of 0.45 ms with every moment subnormal); the weights change by less than 1e-38."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def learning_rate(spec: TrainingSpec, epoch: int, progress: float = 0.0) -> float:
    """lr for 0-based ``epoch``, ``progress`` (0 <= progress < 1) of the way through its updates.

    inv_sqrt_epoch (the authors, algorithm section 7.3): lr0 for epochs 0 and 1, then lr0 / sqrt(epoch);
    constant: lr0; cosine: lr0 * (1 + cos(pi * x)) / 2 with x = (epoch + progress) / epochs.
    """
    cfg = spec.training
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch + progress) / cfg.epochs))
    if cfg.lr_schedule == "constant" or epoch < 2:
        return cfg.lr
    return cfg.lr / math.sqrt(epoch)


def epoch_batches(spec: TrainingSpec, epoch: int, samples: int) -> list[tuple[int, int]]:
    """(start, stop) positions in the epoch's order of each batch of 0-based ``epoch`` (``samples`` per epoch).

    Batches of ``training.batch_size``, except the run's first ``batch_schedule.warmup_samples``
    samples, one per batch (those of earlier epochs count: epoch e starts after e * samples).
    """
    warm = min(max(spec.training.batch_schedule.warmup_samples - epoch * samples, 0), samples)
    size = spec.training.batch_size
    return [(i, i + 1) for i in range(warm)] + [(i, min(i + size, samples)) for i in range(warm, samples, size)]


class Trainer:
    """A run of ``spec`` on ``dataset`` whose files go to ``out_dir``."""

    def __init__(self, spec: TrainingSpec, dataset: Dataset, out_dir: Path, *,
                 callback: Callback | None = None, should_stop: Callable[[], bool] | None = None,
                 progress_bar: bool = False, dataset_record: dict[str, Any] | None = None):
        check_fit(spec, dataset.facts())
        self.dataset_record = dataset_record  # written into the model file (``checkpoint.save_model``)
        self.spec, self.dataset, self.out_dir = spec, dataset, Path(out_dir)
        self.callback = callback or (lambda _event: None)
        self.should_stop = should_stop or (lambda: False)
        self.progress_bar = progress_bar
        self.device = resolve_device(spec.training.device)
        cfg = spec.training
        self.net = SpikingNetwork(spec, dataset.input_shape, self.device, seed=cfg.seed)
        # fused: one pass over each weight tensor per step (10x the default loop on the CPU, same rule)
        self.optimizer = torch.optim.Adam(self.net.parameters, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
                                          fused=self.device.type in ("cpu", "cuda"))
        self.rng = np.random.Generator(np.random.PCG64(cfg.seed))
        n_train = min(len(dataset.x_train), cfg.max_train_samples or len(dataset.x_train))
        indices = np.arange(n_train)
        n_val = int(round(cfg.validation_split * n_train))
        if n_val:
            held_out = self.rng.permutation(n_train)
            self.val_indices, indices = np.sort(held_out[:n_val]), np.sort(held_out[n_val:])
        else:
            self.val_indices = np.arange(0)
        self.order = indices.copy()
        self.boost = np.ones(len(dataset.x_train), dtype=np.float64)
        self.test_indices = np.arange(min(len(dataset.x_test), cfg.max_test_samples or len(dataset.x_test)))
        self.test_predictions: np.ndarray | None = None  # of the last evaluation of the test set
        self.epoch = 0  # epochs finished
        self.history: list[dict[str, Any]] = []
        self.train_seconds = 0.0

    # ----------------------------------------------------------------- data
    def encode(self, split: str, indices: np.ndarray) -> torch.Tensor:
        """Spike trains (T x B x D) of samples of ``split``, exactly as training and evaluation see them."""
        data = self.dataset.inputs(split, indices)
        if self.dataset.kind == "spikes":
            return data.to(self.device)
        enc, aug = self.spec.encoding, self.spec.augmentation
        keys = indices
        if aug.enabled and split == "train":
            # distorted images, and a fresh spike train for every presentation (algorithm section 8.3)
            height, width = self.dataset.input_shape
            grids = self._epoch_grid if aug.per == "epoch" else random_grids(
                len(indices), height, width, scale=aug.scale, rotation=aug.rotation, distortion=aug.distortion,
                rng=self.rng)
            data = warp(data.view(-1, height, width), grids).reshape(len(indices), -1)
            keys = indices + (self.epoch + 1) * len(self.dataset.x_train)
        return rate_encode(data.to(self.device), keys, seed=self.spec.training.seed, split=split,
                           time_steps=enc.time_steps, max_rate=enc.max_rate)

    def _shuffle(self) -> None:
        mode = self.spec.hm2bp.shuffle
        n = len(self.order)
        if mode == "full":
            self.order = self.rng.permutation(self.order)
        elif mode == "swaps" and n > 1:
            pairs = self.rng.integers(0, n, size=(SHUFFLE_SWAPS, 2))
            for a, b in pairs:
                self.order[a], self.order[b] = self.order[b], self.order[a]

    # ----------------------------------------------------------- evaluation
    def predict(self, split: str, indices: np.ndarray, report: str | None = None,
                meter: SpikingMeter | None = None) -> np.ndarray:
        """Predicted classes (argmax of output counts) of samples ``indices`` of ``split``; each
        batch's spikes are added to ``meter`` when given. With ``report`` (a label such as
        "epoch 3/20: test"), log lines say how far the pass is: one at its start, then one every
        EVAL_REPORT_SECONDS, so a long test pass is never silent."""
        predicted = [np.zeros(0, dtype=np.int64)]
        size = max(self.spec.training.batch_size, 64)
        if report is not None:
            self.callback({"type": "log", "message": f"{report}: {len(indices)} samples"})
        last = time.perf_counter()
        for start in range(0, len(indices), size):
            inputs = self.encode(split, indices[start:start + size])
            result = self.net.run(inputs)
            if meter is not None:
                meter.add(inputs, result.layer_counts)
            predicted.append(predict(result.counts).cpu().numpy())
            if report is not None and time.perf_counter() - last >= EVAL_REPORT_SECONDS:
                last = time.perf_counter()
                done = min(start + size, len(indices))
                self.callback({"type": "log", "message": f"{report}: {done}/{len(indices)} samples"})
        return np.concatenate(predicted)

    def evaluate(self, split: str, indices: np.ndarray, report: str | None = None,
                 meter: SpikingMeter | None = None) -> float:
        """Accuracy on ``indices`` of ``split``; the test set's predictions are kept in ``test_predictions``."""
        if len(indices) == 0:
            return float("nan")
        predicted = self.predict(split, indices, report, meter)
        if split == "test" and indices is self.test_indices:
            self.test_predictions = predicted
        return float((predicted == self.dataset.labels(split, indices).numpy()).mean())

    # ------------------------------------------------------------- training
    def _train_epoch(self) -> dict[str, Any]:
        cfg, spec = self.spec.training, self.spec
        lr = learning_rate(spec, self.epoch)  # x batch_schedule.factor(batch) per step
        self._shuffle()
        aug = spec.augmentation
        if aug.enabled and aug.per == "epoch":
            self._epoch_grid = random_grids(1, *self.dataset.input_shape, scale=aug.scale, rotation=aug.rotation,
                                            distortion=aug.distortion, rng=self.rng)
        batches = epoch_batches(spec, self.epoch, len(self.order))
        steps = len(batches)
        layer_spikes = [0.0] * len(self.net.layers)
        wrong = np.zeros(len(self.dataset.x_train), dtype=bool)
        seen, cost_sum, logged_sum, correct = 0, 0.0, 0.0, 0
        hits_in_order = np.zeros(len(self.order), dtype=bool)
        started = last_emit = time.perf_counter()
        bar = None
        if self.progress_bar:
            from tqdm import tqdm

            bar = tqdm(total=len(self.order), desc=f"epoch {self.epoch + 1}/{cfg.epochs}", unit="sample", leave=False)
        for step, (begin, end) in enumerate(batches):
            if self.should_stop():
                raise TrainingCancelled(f"cancelled in epoch {self.epoch + 1} at batch {step} of {steps}")
            chunk = self.order[begin:end]
            # cosine: annealed at every batch, by the share of the epoch's samples done
            rate = learning_rate(spec, self.epoch, begin / len(self.order)) if cfg.lr_schedule == "cosine" else lr
            for group in self.optimizer.param_groups:
                group["lr"] = rate * cfg.batch_schedule.factor(len(chunk))
            labels = self.dataset.labels("train", chunk).to(self.device)
            weights = torch.as_tensor(self.boost[chunk], dtype=self.net.parameters[0].dtype, device=self.device)
            result = self.net.run(self.encode("train", chunk), labels, weights)
            assert result.gradients is not None  # run() with labels and learn computes them
            for param, grad in zip(self.net.parameters, result.gradients, strict=True):
                param.grad = grad
            self.optimizer.step()
            batch_cost = float(result.cost.sum())
            weight_sums = torch.stack([p.detach().sum() for p in self.net.parameters])  # NaN/inf anywhere shows here
            if not math.isfinite(batch_cost) or not bool(torch.isfinite(weight_sums).all()):
                raise TrainingDiverged(
                    f"Training diverged in epoch {self.epoch + 1}, batch {step + 1}: the weights became NaN or "
                    f"infinite; lower training.lr or the layers' init_range."
                )
            hits = (predict(result.counts) == labels).cpu().numpy()
            wrong[chunk[~hits]] = True
            hits_in_order[seen:seen + len(chunk)] = hits
            correct += int(hits.sum())
            cost_sum += batch_cost
            logged_sum += float(logged_cost(result.counts, labels, spec.output, spec.encoding.time_steps).sum())
            seen += len(chunk)
            for k, counts in enumerate(result.layer_counts):
                layer_spikes[k] += float(counts.float().mean(1).sum())
            if bar is not None:
                bar.update(len(chunk))
            now = time.perf_counter()
            if step == 0 or now - last_emit >= PROGRESS_SECONDS or step == steps - 1:
                last_emit = now
                rate = seen / max(now - started, 1e-9)
                remaining = (len(self.order) - seen) + (cfg.epochs - self.epoch - 1) * len(self.order)
                self.callback({"type": "progress", "epoch": self.epoch + 1, "epochs": cfg.epochs, "step": step + 1,
                               "steps": steps, "loss": cost_sum / seen, "samples_per_sec": rate,
                               "eta_seconds": remaining / max(rate, 1e-9)})
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - started
        if spec.hm2bp.boosting:
            self._boost(wrong)
        steps_t = spec.encoding.time_steps
        blocks = [float(hits_in_order[i:i + ONLINE_BLOCK].mean()) for i in range(0, seen, ONLINE_BLOCK)]
        return {"epoch": self.epoch + 1, "lr": lr, "loss": cost_sum / max(seen, 1),
                "logged_loss": logged_sum / max(seen, 1),
                "train_accuracy": correct / max(seen, 1), "train_accuracy_per_1000": blocks,
                "firing_rates": [s / max(seen, 1) / steps_t for s in layer_spikes],
                "seconds": seconds, "samples_per_sec": seen / max(seconds, 1e-9)}

    def _boost(self, wrong: np.ndarray) -> None:
        """beta_n *= exp(err_c / 20) for misclassified n of class c (algorithm section 7.5)."""
        labels = self.dataset.y_train
        members = np.zeros(len(labels), dtype=bool)
        members[self.order] = True
        for c in range(self.dataset.num_classes):
            in_class = members & (labels == c)
            total = self.boost[in_class].sum()
            if total <= 0:
                continue
            missed = in_class & wrong
            err = self.boost[missed].sum() / total
            self.boost[missed] *= math.exp(err / 20.0)

    def run(self, *, resume: bool = False) -> dict[str, Any]:
        if resume:
            self._restore()
        cfg = self.spec.training
        self.callback({"type": "log", "message": kernel_path(self.device)})  # built/loaded here, outside epoch time
        if self.epoch:
            self.callback({"type": "log",
                           "message": f"resumed after epoch {self.epoch} from {self.out_dir / 'checkpoint'}"})
        while self.epoch < cfg.epochs:
            with flushed_denormals():
                row = self._train_epoch()
            self.train_seconds += row["seconds"]
            where = f"epoch {row['epoch']}/{cfg.epochs}"
            meter = SpikingMeter(self.net.layers)
            row["test_accuracy"] = self.evaluate("test", self.test_indices, report=f"{where}: testing", meter=meter)
            row.update(meter.summary())
            if len(self.val_indices):
                row["val_accuracy"] = self.evaluate("train", self.val_indices, report=f"{where}: validating")
            self.epoch += 1
            self.history.append(row)
            self._checkpoint()
            self.callback({"type": "epoch", **row})
            self.callback({"type": "log", "message": (
                f"epoch {row['epoch']}/{cfg.epochs}: loss {row['loss']:.2f}, train {row['train_accuracy']:.4f}, "
                f"test {row['test_accuracy']:.4f}, {row['seconds']:.1f} s")})
        metrics = self.metrics()
        save_model(self.out_dir, self.net.state_dict(), self.spec.to_json(), metrics, dataset=self.dataset_record)
        return metrics

    def metrics(self) -> dict[str, Any]:
        tests = [row["test_accuracy"] for row in self.history]
        final = {
            "test_accuracy": tests[-1] if tests else None,
            "best_test_accuracy": max(tests) if tests else None,
            "train_seconds": self.train_seconds,
            "epochs": self.epoch,
        }
        if self.history and "val_accuracy" in self.history[0]:
            best = max(self.history, key=lambda row: row["val_accuracy"])
            final["best_val_accuracy"] = best["val_accuracy"]
            final["test_accuracy_at_best_val"] = best["test_accuracy"]
        return {"epochs": self.history, "final": final}

    # ----------------------------------------------------------- checkpoints
    def _checkpoint(self) -> None:
        tensors, optim_info = optimizer_tensors(self.optimizer)
        tensors.update(self.net.state_dict())
        tensors["boost"] = torch.from_numpy(self.boost)
        tensors["order"] = torch.from_numpy(self.order.astype(np.int64))
        info = {"epoch": self.epoch, "optimizer": optim_info, "rng": self.rng.bit_generator.state,
                "history": self.history, "train_seconds": self.train_seconds, "spec": self.spec.to_dict()}
        save_checkpoint(self.out_dir, tensors, info)

    def _restore(self) -> None:
        loaded = load_checkpoint(self.out_dir, warn=lambda message: self.callback({"type": "log", "message": message}))
        if loaded is None:
            return
        tensors, info = loaded
        # re-validated, so that a checkpoint written before the spec gained a field (with its default) still fits
        if TrainingSpec.model_validate(info["spec"]).to_dict() != self.spec.to_dict():
            raise ValueError(
                f"{self.out_dir}: the checkpoint was written by a different spec; resume needs the same one")
        self.net.load_state_dict(tensors)
        restore_optimizer(self.optimizer, {k: v.to(self.device) for k, v in tensors.items()}, info["optimizer"])
        self.boost = tensors["boost"].numpy().copy()
        self.order = tensors["order"].numpy().copy()
        self.rng.bit_generator.state = info["rng"]
        self.epoch, self.history, self.train_seconds = info["epoch"], info["history"], info["train_seconds"]


def train(spec: TrainingSpec, dataset: Dataset, out_dir: str | Path, *, callback: Callback | None = None,
          should_stop: Callable[[], bool] | None = None, resume: bool = False,
          progress_bar: bool = False, dataset_record: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``spec`` on ``dataset``; writes model.safetensors (recording ``dataset_record``, e.g.
    ``data.provenance(ref, dataset)``), spec.json, metrics.json and checkpoint/."""
    trainer = Trainer(spec, dataset, Path(out_dir), callback=callback, should_stop=should_stop,
                      progress_bar=progress_bar, dataset_record=dataset_record)
    return trainer.run(resume=resume)


def evaluate(model_dir: str | Path, dataset: Dataset) -> float:
    """Test accuracy of a trained model folder on ``dataset`` (spike trains from the run's seed)."""
    weights, spec_json = load_model(Path(model_dir))
    spec = TrainingSpec.model_validate_json(spec_json)
    spec.training.max_train_samples = 1
    trainer = Trainer(spec, dataset, Path(model_dir))
    trainer.net.load_state_dict(weights)
    trainer.test_indices = np.arange(len(dataset.x_test))
    return trainer.evaluate("test", trainer.test_indices)
