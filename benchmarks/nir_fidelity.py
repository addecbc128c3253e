"""A trained network exported to NIR and run in an independent simulator: how much of it survives.

    hm2bp train examples/mnist_mlp.yaml --data ../shared/data/mnist.npz --out runs/mnist   # or a job's artifacts
    python benchmarks/nir_fidelity.py runs/mnist --data ../shared/data/mnist.npz

Exports MODEL_DIR with :func:`hm2bp_core.nir_export.export_nir`, reads the file back with
snnTorch's NIR importer (``import_from_nir``, with nirtorch), feeds it the test set's input spike
trains (our encoding, the run's seed) and compares it with our own simulation of the same weights,
once with the refractory period the model was trained with and once with it set to 0 (NIR's
CubaLIF has none). Columns: test accuracy, and against the importer: samples with the same
prediction, (sample, output neuron) pairs with the same spike count, and the spike agreement (coincident
spikes / spikes in either raster, after the alignment of docs/nir.md), for the output layer and
the hidden layer. Below, per output neuron, the agreement with the trained refractory period.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hm2bp_core.data import load_dataset
from hm2bp_core.encoding import rate_encode
from hm2bp_core.nir_export import export_nir, input_shape_of, load_network
from hm2bp_core.nir_replay import Agreement, compare, import_snntorch, importer_counts, replay, with_refractory
from hm2bp_core.objective import predict

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--data", default=str(SHARED_MNIST) if SHARED_MNIST.exists() else "builtin:mnist")
    parser.add_argument("--test-samples", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=250)
    args = parser.parse_args()
    torch.set_num_threads(1)

    net = load_network(args.model_dir)
    dataset = load_dataset(args.data)
    spec = net.spec
    if spec.encoding.kind != "rate":
        sys.exit("this benchmark encodes images; the model was trained on spike rasters")
    input_shape = input_shape_of(net)
    trained_refractory = spec.neuron.refractory
    ours = {trained_refractory: net, 0: with_refractory(net, 0)}
    with tempfile.TemporaryDirectory() as folder:
        path = export_nir(net, Path(folder) / "model.nir")
        size = path.stat().st_size
        module = import_snntorch(path)

    depth = len(net.layers)
    n = min(args.test_samples, len(dataset.x_test))
    labels = dataset.labels("test", np.arange(n)).numpy()
    correct = {key: 0 for key in (*ours, "importer")}
    agreement = {(r, k): Agreement() for r in ours for k in range(depth)}
    seconds = {key: 0.0 for key in correct}
    for start in range(0, n, args.batch_size):
        indices = np.arange(start, min(start + args.batch_size, n))
        raster = rate_encode(dataset.inputs("test", indices), indices, seed=spec.training.seed, split="test",
                             time_steps=spec.encoding.time_steps, max_rate=spec.encoding.max_rate)
        began = time.perf_counter()
        theirs = replay(module, raster, input_shape)
        seconds["importer"] += time.perf_counter() - began
        truth = torch.as_tensor(labels[indices])
        correct["importer"] += int((predict(importer_counts(theirs[-1], depth)) == truth).sum())
        for refractory, network in ours.items():
            began = time.perf_counter()
            traces = network.forward(raster)
            seconds[refractory] += time.perf_counter() - began
            correct[refractory] += int((predict(traces[-1].spikes.sum(0)) == truth).sum())
            for k, trace in enumerate(traces):
                agreement[refractory, k] = agreement[refractory, k] + compare(trace.spikes, theirs[k], delay=k + 1)
        print(f"{indices[-1] + 1}/{n} samples", file=sys.stderr)

    out, hidden = depth - 1, 0
    sizes = "-".join(str(s) for s in (input_shape[0], *[layer.units for layer in net.layers]))
    print(f"model {args.model_dir} ({sizes}), "
          f"{n} test samples of {args.data}, T = {spec.encoding.time_steps}; model.nir {size / 1e6:.2f} MB")
    print(f"{'simulation':<36} {'test acc':>9} {'same prediction':>15} {'same count':>13} {'spikes agree':>13} "
          f"{'hidden agree':>13} {'s':>6}")
    for refractory in ours:
        a, h = agreement[refractory, out], agreement[refractory, hidden]
        name = f"hm2bp, T_ref = {refractory}" + (" (trained)" if refractory == trained_refractory else "")
        print(f"{name:<36} {correct[refractory] / n:>9.4f} {f'{a.predictions_equal}/{a.samples}':>15} "
              f"{f'{a.counts_equal}/{a.pairs}':>13} {a.spike_agreement:>13.5f} {h.spike_agreement:>13.5f} "
              f"{seconds[refractory]:>6.0f}")
    print(f"{'snnTorch import_from_nir(model.nir)':<36} {correct['importer'] / n:>9.4f} {'':>15} {'':>13} {'':>13} "
          f"{'':>13} {seconds['importer']:>6.0f}")
    print("neurons whose spike trains equal the importer's on every sample: " + "; ".join(
        f"T_ref = {r}: hidden {int(agreement[r, hidden].identical.sum())}/{net.layers[0].units}, "
        f"output {int(agreement[r, out].identical.sum())}/{net.layers[-1].units}" for r in ours))
    print(f"per output neuron, spike agreement with T_ref = {trained_refractory} (trained) and 0:")
    print("neuron " + " ".join(f"{j:>6}" for j in range(net.layers[-1].units)))
    for refractory in ours:
        print(f"T_ref {refractory} " + " ".join(f"{v:>6.3f}" for v in agreement[refractory, out].per_neuron.tolist()))

if __name__ == "__main__":
    main()
