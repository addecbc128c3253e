"""HM2-BP training step against surrogate-gradient BPTT (snnTorch), side by side.

    python benchmarks/speed.py                       # CPU here; CUDA when present (--device)
    python benchmarks/speed.py --steps 50 100 --repeats 5
    python benchmarks/speed.py --network cnn         # the paper's CNN at T = 100 and 400, batch 1
    python benchmarks/speed.py --network cnn --batch 16

Network 784-800-10 (``--network mlp``, the default, batch 64) or the paper's CNN
28x28-15C5-P2-40C5-P2-300-10 (``--network cnn``, batch 1 as the authors train it, T = 100 and
400 by default), both taken from the paper rows of ``hm2bp_core.reference.ROW_SPECS``;
MNIST-shaped rate-coded input (the real MNIST images when ../shared/data/mnist.npz exists),
``--batch`` overrides the batch. Both sides use the same neuron model (LIF with a first-order
synapse, tau_m = 64, tau_s = 8, each layer's threshold of the spec), the same layers (conv:
cross-correlation without bias; pool: the sum over size x size windows, unit weights, not learnt,
as our pool layer), the same uniform initial weights (each layer's init_range) and the same count
objective (35 / 5 spikes). (a) hm2bp: one HM2-BP step (simulate, S-PSP gradients, Adam). (b)
snnTorch 1.0 `Synaptic` neurons, fast-sigmoid surrogate, loss on output spike counts,
backpropagation through time, Adam. Neither side augments its input (the CNN row's augmentation
costs the same on both). Each (method, T) runs in a fresh process, so peak memory is its own: "peak
MiB" is the process's peak resident set (CPU) or torch's peak allocation (CUDA); "step MiB" is the
peak minus what the process held just before its first step (model, data, torch itself).
Throughput is the median over --repeats timed steps after one warm-up step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz"
BATCH = {"mlp": 64, "cnn": 1}  # default batch per network (the CNN: the authors' one sample per step)
STEPS = {"mlp": [50, 100, 200, 400], "cnn": [100, 400]}  # default T per network
NAMES = {"mlp": "784-800-10", "cnn": "28x28-15C5-P2-40C5-P2-300-10"}


def network_spec(network: str, steps: int, batch: int):
    """The paper row's spec (``ROW_SPECS``: mnist-fc or mnist-cnn) at T = ``steps`` and ``batch``."""
    from hm2bp_core.reference import ROW_SPECS
    from hm2bp_core.spec import TrainingSpec

    row = ROW_SPECS["mnist-fc" if network == "mlp" else "mnist-cnn"]
    return TrainingSpec.model_validate({**row, "encoding": {"time_steps": steps}, "training": {"batch_size": batch}})


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def images(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    if SHARED_MNIST.exists():
        with np.load(SHARED_MNIST) as data:
            x, y = data["x_train"][:batch], data["y_train"][:batch]
    else:
        rng = np.random.default_rng(0)
        x, y = rng.integers(0, 256, (batch, 28, 28)).astype(np.uint8), rng.integers(0, 10, batch)
    return torch.from_numpy(x.reshape(batch, -1).astype(np.float32) / 255), torch.from_numpy(y.astype(np.int64))


def hm2bp_step_fn(network: str, steps: int, batch: int, device: torch.device):
    from hm2bp_core.encoding import rate_encode
    from hm2bp_core.network import SpikingNetwork

    spec = network_spec(network, steps, batch)
    net = SpikingNetwork(spec, 784 if network == "mlp" else (28, 28), device)
    optimizer = torch.optim.Adam(net.parameters, lr=1e-3)
    x, y = images(batch)
    y = y.to(device)
    state = {"epoch": 0}

    def step():
        # a fresh draw per step, as the encoding of new samples costs in training
        state["epoch"] += 1
        inputs = rate_encode(x.to(device), np.arange(batch) + batch * state["epoch"], seed=0, split="train",
                             time_steps=steps, max_rate=1 / 5.5)
        result = net.run(inputs, y)
        for p, g in zip(net.parameters, result.gradients, strict=True):
            p.grad = g
        optimizer.step()

    return step


def snntorch_step_fn(network: str, steps: int, batch: int, device: torch.device):
    import snntorch as snn
    from snntorch import surrogate

    spec = network_spec(network, steps, batch)
    neuron = spec.neuron
    alpha, beta = 1 - 1 / neuron.tau_s, 1 - 1 / neuron.tau_m  # the same Euler decays as the LIF of section 2.2
    grad = surrogate.fast_sigmoid()

    def uniform(module: torch.nn.Module, init_range: float) -> torch.nn.Module:
        torch.nn.init.uniform_(module.weight, -init_range, init_range)
        return module

    class SumPool(torch.nn.Module):
        """Unit weights over size x size windows (stride = size): our pool layer's input current."""

        def __init__(self, size: int):
            super().__init__()
            self.size = size

        def forward(self, x):
            return torch.nn.functional.avg_pool2d(x, self.size) * (self.size * self.size)

    class Net(torch.nn.Module):
        """The spec's layers, each followed by Synaptic neurons with that layer's threshold."""

        def __init__(self):
            super().__init__()
            shape = (784,) if network == "mlp" else (1, 28, 28)
            synapses = []
            for cfg in spec.network.layers:
                if cfg.type == "conv":
                    synapses.append(uniform(torch.nn.Conv2d(shape[0], cfg.channels, cfg.kernel, cfg.stride,
                                                            cfg.padding, bias=False), cfg.init_range))
                elif cfg.type == "pool":
                    synapses.append(SumPool(cfg.size))
                else:
                    flat = torch.nn.Flatten() if len(shape) > 1 else torch.nn.Identity()
                    synapses.append(torch.nn.Sequential(flat, uniform(torch.nn.Linear(
                        int(np.prod(shape)), cfg.units, bias=False), cfg.init_range)))
                with torch.no_grad():
                    shape = tuple(synapses[-1](torch.zeros(1, *shape)).shape[1:])
            self.synapses = torch.nn.ModuleList(synapses)
            self.neurons = torch.nn.ModuleList(
                snn.Synaptic(alpha=alpha, beta=beta, threshold=cfg.threshold, spike_grad=grad, reset_mechanism="zero")
                for cfg in spec.network.layers)
            self.in_shape = (784,) if network == "mlp" else (1, 28, 28)

        def forward(self, spikes):
            states = [lif.init_synaptic() for lif in self.neurons]
            counts = 0
            for t in range(spikes.shape[0]):
                s = spikes[t].reshape(-1, *self.in_shape)
                for k, (synapse, lif) in enumerate(zip(self.synapses, self.neurons, strict=True)):
                    s, syn, mem = lif(synapse(s), *states[k])
                    states[k] = (syn, mem)
                counts = counts + s
            return counts

    net = Net().to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = images(batch)
    x, y = x.to(device), y.to(device)
    target = torch.full((batch, 10), spec.output.undesired_count, device=device)
    target[torch.arange(batch), y] = spec.output.desired_count

    def step():
        spikes = (torch.rand(steps, batch, 784, device=device) < x * (1 / 5.5)).float()
        spikes[0] = 0
        counts = net(spikes)
        loss = ((counts - target) ** 2).sum() / 2 / batch
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def measure(network: str, method: str, steps: int, batch: int, repeats: int, device_name: str) -> dict:
    device = torch.device(device_name)
    step = (hm2bp_step_fn if method == "hm2bp" else snntorch_step_fn)(network, steps, batch, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        before = rss_mib()
    step()  # warm-up (builds the C++ kernel cache, allocator pools)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"method": method, "steps": steps, "samples_per_sec": batch / statistics.median(times),
            "peak_mib": peak, "step_mib": peak - before}


def rate(samples_per_sec: float) -> str:
    """One decimal, or three significant digits below 10 samples/s (the CNN at batch 1)."""
    return f"{samples_per_sec:.1f}" if samples_per_sec >= 10 else f"{samples_per_sec:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", choices=sorted(NAMES), default="mlp")
    parser.add_argument("--steps", type=int, nargs="+", help="T values (default: 50 100 200 400, the CNN 100 400)")
    parser.add_argument("--batch", type=int, help="samples per step (default: 64, the CNN 1)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", nargs="+", default=["hm2bp", "snntorch"])
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.steps = args.steps or STEPS[args.network]
    args.batch = args.batch or BATCH[args.network]
    if args.one:
        print(json.dumps(measure(args.network, args.one[0], int(args.one[1]), args.batch, args.repeats,
                                 args.device)))
        return

    rows = {}
    load_before = os.getloadavg()[0]
    for steps in args.steps:
        for method in args.methods:
            done = subprocess.run([sys.executable, __file__, "--network", args.network, "--batch", str(args.batch),
                                   "--one", method, str(steps), "--repeats", str(args.repeats),
                                   "--device", args.device], capture_output=True, text=True)
            if done.returncode != 0:
                print(f"# {method} T={steps} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            rows[(method, steps)] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"# {NAMES[args.network]}, batch {args.batch}, device {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; median of {args.repeats} steps; load average "
          f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after (other processes share the CPU)")
    header = (f"{'T':>4} | {'hm2bp smp/s':>11} {'peak MiB':>8} {'step MiB':>8} | {'BPTT smp/s':>10} {'peak MiB':>8} "
              f"{'step MiB':>8} | {'speed x':>7} {'mem x':>6}")
    print(header)
    print("-" * len(header))
    base = {m: rows.get((m, args.steps[0])) for m in ("hm2bp", "snntorch")}
    for steps in args.steps:
        h, b = rows.get(("hm2bp", steps)), rows.get(("snntorch", steps))
        cells = [f"{steps:>4} |"]
        for r in (h, b):
            cells.append(f"{rate(r['samples_per_sec']):>11} {r['peak_mib']:>8.0f} {r['step_mib']:>8.0f} |" if r else
                         f"{'-':>11} {'-':>8} {'-':>8} |")
        ratio = f"{h['samples_per_sec'] / b['samples_per_sec']:>7.2f}" if h and b else f"{'-':>7}"
        mem = f"{h['peak_mib'] / b['peak_mib']:>6.2f}" if h and b else f"{'-':>6}"
        cells.append(f"{ratio} {mem}")
        print(" ".join(cells))
    for method, first in base.items():
        last = rows.get((method, args.steps[-1]))
        if first and last:
            print(f"# {method}: peak memory at T={args.steps[-1]} / at T={args.steps[0]} = "
                  f"{last['peak_mib'] / first['peak_mib']:.2f} (step memory {last['step_mib']:.0f} / "
                  f"{max(first['step_mib'], 1):.0f} MiB)")


if __name__ == "__main__":
    main()
