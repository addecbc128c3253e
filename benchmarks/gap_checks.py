"""Checks of the MNIST gap that need no long training run; prints one row per hypothesis.

    python benchmarks/gap_checks.py [--updates 300]
    python benchmarks/gap_checks.py --checkpoint runs/reproduce/faithful/seed0   # a trained state

1. trainer path: the gradients the trainer applies (compiled kernel, batch path, penalty added)
   against the per-sample path plus the penalty and against the tensor code, at every 100th of
   ``--updates`` consecutive Adam updates on real MNIST samples (seed 3): an update path that
   differed from the per-sample gradients the issue compared would show here;
2. Adam: torch's fused Adam against the authors' g_adam_vecAdd (common/cuBase.cu) written out in
   float32 numpy (b1_t, b2_t kept as running float products, as their Spiking::updateWeight does),
   3,000 steps of sparse gradients plus a weight-proportional term like the penalty;
3. data: the training and test labels in the order the authors' reader sees the IDX files
   (first training labels 5 0 4 1 9 ..., the last test label 6 that their log prints);
4. dummy label train: its length for T = 400 against the authors' g_modifySpikes loop.

With ``--checkpoint`` (a run folder of benchmarks/reproduce.py), on that trained state instead:

5. hidden die-off: hidden neurons that never fire on the first 1,000 test images, those whose 10
   outgoing weights are all below 1e-6 (no error can reach them any more: dE/da_j = sum_i d_i w_ij),
   and their largest incoming weight. The authors' log prints the output weights from hidden
   neurons 0-2 after every epoch (``output: weight:``); none is below 1e-6 in any of their 200 epochs;
6. late-state update path: compiled kernel against the tensor code on training samples 0-3 of
   that state (most hidden neurons silent: the fallback rules carry the gradient).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import hm2bp_core.layers as layers
from hm2bp_core.checkpoint import load_checkpoint
from hm2bp_core.data import load_dataset
from hm2bp_core.encoding import rate_encode
from hm2bp_core.layers import exponential_penalty_grad
from hm2bp_core.network import SpikingNetwork
from hm2bp_core.objective import dummy_spike_times
from hm2bp_core.spec import TrainingSpec
from hm2bp_core.train import Trainer

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz"


def trainer_path(dataset, updates: int) -> str:
    spec = TrainingSpec()
    net = SpikingNetwork(spec, dataset.input_shape, "cpu", seed=3)
    optimizer = torch.optim.Adam(net.parameters, lr=1e-3, fused=True)
    penalty = spec.training.regularization

    def gradients(index: int, mode: str) -> list[torch.Tensor]:
        x = rate_encode(dataset.inputs("train", np.array([index])), [index], seed=3, split="train", time_steps=400,
                        max_rate=spec.encoding.max_rate)
        y = dataset.labels("train", np.array([index]))
        kernel = layers.for_tensor
        if mode == "tensor":
            layers.for_tensor = lambda _tensor: None
        try:
            result = net.run(x, y, torch.ones(1), per_sample=mode == "per_sample")
        finally:
            layers.for_tensor = kernel
        if mode == "per_sample":
            return [g[0] + exponential_penalty_grad(layer.weight, penalty)
                    for g, (_, layer) in zip(result.gradients, net.learnable, strict=True)]
        return result.gradients

    worst = {"per_sample": 0.0, "tensor": 0.0}
    for step in range(updates + 1):
        applied = gradients(step, "trainer")
        if step % 100 == 0:
            for mode in worst:
                other = gradients(step, mode)
                worst[mode] = max(worst[mode], *[float((a - b).abs().max() / b.abs().max())
                                                 for a, b in zip(applied, other, strict=True)])
        for param, grad in zip(net.parameters, applied, strict=True):
            param.grad = grad
        optimizer.step()
    return (f"max relative difference over {updates} updates: vs per-sample + penalty {worst['per_sample']:.1e}, "
            f"vs tensor code {worst['tensor']:.1e}")


def adam() -> str:
    rng = np.random.default_rng(0)
    w = rng.uniform(-1, 1, 5000).astype(np.float32)
    param = torch.nn.Parameter(torch.from_numpy(w.copy()))
    optimizer = torch.optim.Adam([param], lr=1e-3, betas=(0.9, 0.999), eps=1e-8, fused=True)
    g1, g2 = np.zeros_like(w), np.zeros_like(w)
    b1t, b2t = np.float32(0.9), np.float32(0.999)
    f = np.float32
    for step in range(3000):
        sparse = (rng.standard_normal(5000) * (0.01 if step % 7 else 3.0) * (rng.random(5000) < 0.3)).astype(np.float32)
        param.grad = torch.from_numpy(sparse + f(0.05) * param.detach().numpy())
        optimizer.step()
        grad = sparse + f(0.05) * w
        g1 = f(0.9) * g1 + f(1 - 0.9) * grad
        g2 = f(0.999) * g2 + f(1 - 0.999) * grad * grad
        w = (w - f(1e-3) * (g1 / (f(1) - b1t)) / (np.sqrt(g2 / (1.0 - float(b2t))).astype(np.float32) + f(1e-8)))
        w = w.astype(np.float32)
        b1t, b2t = f(b1t * f(0.9)), f(b2t * f(0.999))
    return f"max |w_torch - w_authors| after 3,000 steps: {np.abs(param.detach().numpy() - w).max():.1e} (|w| <= 1)"


def data(dataset) -> str:
    train = dataset.labels("train", np.arange(10)).tolist()
    last_test = int(dataset.labels("test", np.array([len(dataset.x_test) - 1]))[0])
    official = train == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4] and last_test == 6
    order = "the IDX order" if official else "NOT the IDX order"
    return f"first training labels {train}, last test label {last_test}: {order}"


def dummy() -> str:
    steps, desired = 400, 35
    interval = steps // desired  # int interval = endTime / mCnt; for(t = interval; t < endTime; t += interval)
    theirs = list(range(interval, steps, interval))
    ours = list(dummy_spike_times(steps, desired))
    same = "equal" if ours == theirs else "DIFFERENT"
    return f"ours {len(ours)} spikes at {ours[0]}..{ours[-1]}, theirs {len(theirs)}: {same}"


def trained(folder: Path, dataset) -> Trainer:
    loaded = load_checkpoint(folder)
    if loaded is None:
        raise SystemExit(f"{folder}: no checkpoint/ there (a run folder of benchmarks/reproduce.py)")
    tensors, info = loaded
    trainer = Trainer(TrainingSpec.model_validate(info["spec"]), dataset, folder)
    trainer.net.load_state_dict(tensors)
    trainer.epoch = info["epoch"]
    return trainer


def die_off(trainer: Trainer) -> str:
    hidden = trainer.net.forward(trainer.encode("test", np.arange(1000)))[0].spikes.sum(0)
    w_in, w_out = (p.detach() for p in trainer.net.parameters)
    silent = hidden.sum(0) == 0
    cut = w_out.abs().max(0).values < 1e-6
    incoming = float(w_in[cut].abs().max()) if bool(cut.any()) else 0.0
    return (f"after epoch {trainer.epoch}: {int(silent.sum())} of {len(silent)} hidden neurons silent on 1,000 test "
            "images, "
            f"{int(cut.sum())} cut off (all outgoing |w| < 1e-6; {int((cut & silent).sum())} of them silent), their "
            f"largest incoming |w| {incoming:.1e}; hidden 0-2 cut off: {cut[:3].int().tolist()}")


def late_paths(trainer: Trainer, dataset) -> str:
    worst, silent = 0.0, []
    for index in range(4):
        x = trainer.encode("train", np.array([index]))
        y = dataset.labels("train", np.array([index]))
        applied = trainer.net.run(x, y, torch.ones(1))
        kernel = layers.for_tensor
        layers.for_tensor = lambda _tensor: None
        try:
            tensor = trainer.net.run(x, y, torch.ones(1))
        finally:
            layers.for_tensor = kernel
        silent.append(int((applied.layer_counts[0][0] == 0).sum()))
        worst = max(worst, *[float((a - b).abs().max() / b.abs().max())
                             for a, b in zip(applied.gradients, tensor.gradients, strict=True)])
    return f"kernel vs tensor code on 4 samples ({silent} of 800 hidden silent): max relative difference {worst:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(SHARED_MNIST) if SHARED_MNIST.exists() else "builtin:mnist")
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--checkpoint", type=Path, help="check this trained state instead (rows 5 and 6)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = load_dataset(args.data)
    if args.checkpoint:
        trainer = trained(args.checkpoint, dataset)
        for name, check in (("hidden die-off", lambda: die_off(trainer)),
                            ("late update path", lambda: late_paths(trainer, dataset))):
            print(f"{name:<19}  {check()}", flush=True)
        return
    checks = [("data order", lambda: data(dataset)), ("dummy label train", dummy), ("Adam", adam),
              ("trainer update path", lambda: trainer_path(dataset, args.updates))]
    for name, check in checks:  # cheapest first, each printed as soon as it is known
        print(f"{name:<19}  {check()}", flush=True)

if __name__ == "__main__":
    main()
