"""HM2-BP training step against surrogate-gradient BPTT (snnTorch), side by side.

    python benchmarks/speed.py                       # CPU here; CUDA when present (--device)
    python benchmarks/speed.py --steps 50 100 --repeats 5

Network 784-800-10, MNIST-shaped rate-coded input (the real MNIST images when
../shared/data/mnist.npz exists), batch 64. Both sides use the same neuron model (LIF with a
first-order synapse, tau_m = 64, tau_s = 8, thresholds 20 / 8) and the same count objective
(35 / 5 spikes). (a) hm2bp: one HM2-BP step (simulate, S-PSP gradients, Adam). (b) snnTorch 1.0
`Synaptic` neurons, fast-sigmoid surrogate, loss on output spike counts, backpropagation through
time, Adam. Each (method, T) runs in a fresh process, so peak memory is its own: "peak MiB" is the
process's peak resident set (CPU) or torch's peak allocation (CUDA); "step MiB" is the peak minus
what the process held just before its first step (model, data, torch itself).
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
BATCH = 64


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


def hm2bp_step_fn(steps: int, device: torch.device):
    from hm2bp_core.encoding import rate_encode
    from hm2bp_core.network import SpikingNetwork
    from hm2bp_core.spec import TrainingSpec

    spec = TrainingSpec.model_validate({"encoding": {"time_steps": steps}, "training": {"batch_size": BATCH}})
    net = SpikingNetwork(spec, 784, device)
    optimizer = torch.optim.Adam(net.parameters, lr=1e-3)
    x, y = images(BATCH)
    y = y.to(device)
    state = {"epoch": 0}

    def step():
        # a fresh draw per step, as the encoding of new samples costs in training
        state["epoch"] += 1
        inputs = rate_encode(x.to(device), np.arange(BATCH) + BATCH * state["epoch"], seed=0, split="train",
                             time_steps=steps, max_rate=1 / 5.5)
        result = net.run(inputs, y)
        for p, g in zip(net.parameters, result.gradients, strict=True):
            p.grad = g
        optimizer.step()

    return step


def snntorch_step_fn(steps: int, device: torch.device):
    import snntorch as snn
    from snntorch import surrogate

    alpha, beta = 1 - 1 / 8, 1 - 1 / 64  # the same Euler decays as the LIF of algorithm section 2.2
    grad = surrogate.fast_sigmoid()

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(784, 800, bias=False), torch.nn.Linear(800, 10, bias=False)
            self.lif1 = snn.Synaptic(alpha=alpha, beta=beta, threshold=20.0, spike_grad=grad, reset_mechanism="zero")
            self.lif2 = snn.Synaptic(alpha=alpha, beta=beta, threshold=8.0, spike_grad=grad, reset_mechanism="zero")

        def forward(self, spikes):
            syn1, mem1 = self.lif1.init_synaptic()
            syn2, mem2 = self.lif2.init_synaptic()
            counts = 0
            for t in range(spikes.shape[0]):
                s1, syn1, mem1 = self.lif1(self.fc1(spikes[t]), syn1, mem1)
                s2, syn2, mem2 = self.lif2(self.fc2(s1), syn2, mem2)
                counts = counts + s2
            return counts

    net = Net().to(device)
    torch.nn.init.uniform_(net.fc1.weight, -1, 1)
    torch.nn.init.uniform_(net.fc2.weight, -1, 1)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = images(BATCH)
    x, y = x.to(device), y.to(device)
    target = torch.full((BATCH, 10), 5.0, device=device)
    target[torch.arange(BATCH), y] = 35.0

    def step():
        spikes = (torch.rand(steps, BATCH, 784, device=device) < x * (1 / 5.5)).float()
        spikes[0] = 0
        counts = net(spikes)
        loss = ((counts - target) ** 2).sum() / 2 / BATCH
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def measure(method: str, steps: int, repeats: int, device_name: str) -> dict:
    device = torch.device(device_name)
    step = (hm2bp_step_fn if method == "hm2bp" else snntorch_step_fn)(steps, device)
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
    return {"method": method, "steps": steps, "samples_per_sec": BATCH / statistics.median(times),
            "peak_mib": peak, "step_mib": peak - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", nargs="+", default=["hm2bp", "snntorch"])
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.repeats, args.device)))
        return

    rows = {}
    load_before = os.getloadavg()[0]
    for steps in args.steps:
        for method in args.methods:
            done = subprocess.run([sys.executable, __file__, "--one", method, str(steps), "--repeats",
                                   str(args.repeats), "--device", args.device], capture_output=True, text=True)
            if done.returncode != 0:
                print(f"# {method} T={steps} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            rows[(method, steps)] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"# 784-800-10, batch {BATCH}, device {args.device}, torch {torch.__version__}, "
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
            cells.append(f"{r['samples_per_sec']:>11.1f} {r['peak_mib']:>8.0f} {r['step_mib']:>8.0f} |" if r else
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
