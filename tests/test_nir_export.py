"""NIR export (hm2bp_core.nir_export): the file read back with ``nir.read`` (node types, shapes,
parameters, metadata), replayed in snnTorch's NIR importer (an independent simulator) with our
input trains, and the one-line errors of bad input. With the refractory period at 0 in our
simulation the importer's output spikes must equal ours exactly, spike for spike; with the
trained T_ref = 2 they must not (the part NIR cannot express has a cost)."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hm2bp_core.cli import app
from hm2bp_core.data import load_dataset
from hm2bp_core.encoding import rate_encode
from hm2bp_core.network import SpikingNetwork
from hm2bp_core.nir_export import DEFAULT_DT, NirExportError, _graph, export_nir, load_network
from hm2bp_core.nir_replay import compare, import_snntorch, importer_counts, replay, with_refractory
from hm2bp_core.spec import load_spec
from hm2bp_core.train import train

SMALL_MLP = {
    "network": {"layers": [{"type": "dense", "units": 30, "threshold": 5},
                           {"type": "dense", "units": 10, "threshold": 5}]},
    "encoding": {"time_steps": 80},
    "training": {"epochs": 1, "batch_size": 8, "lr": 0.01, "max_train_samples": 160, "max_test_samples": 40},
}
SMALL_CNN = {
    "network": {"layers": [
        {"type": "conv", "channels": 4, "kernel": 3, "padding": 1, "threshold": 1.0, "init_range": 1.0},
        {"type": "pool", "size": 2, "threshold": 0.5},
        {"type": "dense", "units": 20, "threshold": 2.0},
        {"type": "dense", "units": 10, "threshold": 2.0}]},
    "encoding": {"time_steps": 60},
}
SAMPLES = 8


@pytest.fixture(scope="module")
def digits():
    return load_dataset("builtin:digits")


@pytest.fixture(scope="module")
def trained_mlp(tmp_path_factory, digits):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("mlp")
    train(load_spec(SMALL_MLP), digits, out)
    return out


def input_trains(net: SpikingNetwork, digits, count: int = SAMPLES, max_rate: float | None = None) -> torch.Tensor:
    """The test split's first ``count`` samples as spike trains (T x B x 64), as our evaluation draws them."""
    indices = np.arange(count)
    enc = net.spec.encoding
    return rate_encode(digits.inputs("test", indices), indices, seed=0, split="test", time_steps=enc.time_steps,
                       max_rate=max_rate or enc.max_rate).float()



def test_mlp_file_reads_back_with_the_mapped_parameters(trained_mlp, tmp_path):
    net = load_network(trained_mlp)
    path = export_nir(trained_mlp, tmp_path / "model.nir")
    graph = nir.read(str(path))

    assert {name: type(node).__name__ for name, node in graph.nodes.items()} == {
        "input": "Input", "layer00.1_linear": "Linear", "layer00.2_lif": "CubaLIF",
        "layer01.1_linear": "Linear", "layer01.2_lif": "NIRGraph", "output": "Output"}
    assert graph.edges == [("input", "layer00.1_linear"), ("layer00.1_linear", "layer00.2_lif"),
                           ("layer00.2_lif", "layer01.1_linear"), ("layer01.1_linear", "layer01.2_lif"),
                           ("layer01.2_lif", "output")]
    assert list(graph.nodes["input"].input_type["input"]) == [64]
    assert list(graph.nodes["output"].output_type["output"]) == [10]
    for k, layer in enumerate(net.layers):
        assert np.array_equal(graph.nodes[f"layer{k:02d}.1_linear"].weight, layer.weight.detach().numpy())

    hidden = graph.nodes["layer00.2_lif"]
    dt = DEFAULT_DT
    assert hidden.tau_syn.shape == (30,)
    np.testing.assert_allclose(hidden.tau_syn, 8.0 * dt)
    np.testing.assert_allclose(hidden.tau_mem, 64.0 * dt)
    np.testing.assert_allclose(hidden.r, 64.0)  # r = tau_mem / dt: v += -v/tau_m + I per step
    assert np.all(hidden.v_leak == 0) and np.all(hidden.v_reset == 0) and np.all(hidden.w_in == 1)
    assert np.all(hidden.v_threshold == np.float32(5 - 1e-6))  # the authors' dense test v > nu - 1e-6
    assert hidden.metadata["refractory_steps"] == 2 and hidden.metadata["input_delay_steps"] == 1

    output = graph.nodes["layer01.2_lif"]
    assert sorted(output.edges) == [("input", "lif"), ("lif", "output"), ("lif", "w_rec"), ("w_rec", "lif")]
    w_rec = output.nodes["w_rec"].weight
    np.testing.assert_array_equal(w_rec, -(1 - np.eye(10, dtype=np.float32)))  # w0 = 1 between every pair
    assert output.nodes["lif"].tau_syn.shape == (10,)

    meta = graph.metadata
    assert float(meta["dt"]) == dt and int(meta["time_steps"]) == 80 and int(meta["refractory_steps"]) == 2
    assert int(meta["input_delay_steps_per_layer"]) == 1 and int(meta["output_delay_steps"]) == 2
    assert json.loads(meta["spec"])["network"]["layers"][0]["units"] == 30


def test_mlp_in_snntorch_equals_ours_without_refractory_period(trained_mlp, tmp_path, digits):
    net = load_network(trained_mlp)
    raster = input_trains(net, digits)
    module = import_snntorch(export_nir(net, tmp_path / "model.nir"))
    hidden, output = replay(module, raster, (64,))

    ours = with_refractory(net, 0).forward(raster)
    for depth, (mine, theirs) in enumerate([(ours[0].spikes, hidden), (ours[1].spikes, output)], start=1):
        exact = compare(mine, theirs, delay=depth)
        assert exact.either.sum() > 10 * SAMPLES  # the comparison is about spikes that happen
        assert exact.spike_agreement == 1.0 and exact.counts_equal == exact.pairs
        assert bool(exact.identical.all()) and bool((exact.per_neuron == 1).all())
    assert torch.equal(ours[1].spikes.sum(0), importer_counts(output, delay=2))

    trained = compare(net.forward(raster)[0].spikes, hidden, delay=1)  # T_ref = 2, as trained
    assert trained.spike_agreement < 1.0


def test_cnn_file_and_replay(tmp_path, digits):
    spec = load_spec({**SMALL_CNN, "neuron": {"refractory": 0}})
    net = SpikingNetwork(spec, (8, 8), seed=1)
    graph = nir.read(str(export_nir(net, tmp_path / "cnn.nir")))
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds == {"input": "Input", "layer00.1_conv": "Conv2d", "layer00.2_lif": "CubaLIF",
                     "layer01.1_pool": "SumPool2d", "layer01.2_lif": "CubaLIF", "layer02.0_flatten": "Flatten",
                     "layer02.1_linear": "Linear", "layer02.2_lif": "CubaLIF", "layer03.1_linear": "Linear",
                     "layer03.2_lif": "NIRGraph", "output": "Output"}
    conv = graph.nodes["layer00.1_conv"]
    assert np.array_equal(conv.weight, net.layers[0].weight.detach().numpy()) and list(conv.padding) == [1, 1]
    assert graph.nodes["layer00.2_lif"].v_threshold.shape == (4, 8, 8)
    assert np.all(graph.nodes["layer00.2_lif"].v_threshold == np.float32(1.0))  # conv layers test v > nu
    assert list(graph.nodes["layer01.1_pool"].kernel_size) == [2, 2]
    assert graph.nodes["layer01.2_lif"].v_threshold.shape == (4, 4, 4)
    assert list(graph.nodes["input"].input_type["input"]) == [1, 8, 8]

    raster = input_trains(net, digits, count=3, max_rate=0.5)
    ours = net.forward(raster)
    assert all(trace.spikes.any() for trace in ours)  # every layer takes part
    theirs = replay(import_snntorch(tmp_path / "cnn.nir"), raster, (1, 8, 8))
    assert len(theirs) == 4
    for depth, (mine, imported) in enumerate(zip(ours, theirs, strict=True), start=1):
        agreement = compare(mine.spikes, imported, delay=depth)
        assert agreement.either.sum() > 0 and agreement.spike_agreement == 1.0
        assert agreement.counts_equal == agreement.pairs


def test_export_command_writes_the_file(trained_mlp, tmp_path):
    out = tmp_path / "cli.nir"
    result = CliRunner().invoke(app, ["export", str(trained_mlp), "--format", "nir", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"out": str(out), "format": "nir"}
    assert isinstance(nir.read(str(out)).nodes["layer00.2_lif"], nir.CubaLIF)
    assert [p.name for p in tmp_path.iterdir()] == ["cli.nir"]  # no temporary left beside it


def errors_of(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["export", *args])
    return result.exit_code, result.stderr


@pytest.mark.parametrize("case", ["missing", "empty", "not_safetensors"])
def test_a_folder_that_is_not_a_model_is_a_one_line_error(tmp_path, case):
    folder = tmp_path / "model"
    if case != "missing":
        folder.mkdir()
    if case == "not_safetensors":
        (folder / "model.safetensors").write_text("not a safetensors file")
    out = tmp_path / "out.nir"
    code, stderr = errors_of(str(folder), "--out", str(out))
    assert code == 1 and stderr.count("\n") == 1 and stderr.startswith(f"error: {folder}")
    assert ("not a model folder" if case != "not_safetensors" else "unreadable model file") in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if case == "missing" else ["model"])


def test_networks_that_cannot_be_exported_as_they_are(trained_mlp, tmp_path):
    code, stderr = errors_of(str(trained_mlp), "--format", "onnx", "--out", str(tmp_path / "m.onnx"))
    assert code == 1 and "the only export format is 'nir'" in stderr

    cnn = tmp_path / "cnn"  # a conv-first model whose spec does not say the image size
    spec = load_spec(SMALL_CNN)
    from hm2bp_core.checkpoint import save_model

    save_model(cnn, SpikingNetwork(spec, (8, 8)).state_dict(), spec.to_json(), {})
    code, stderr = errors_of(str(cnn), "--out", str(tmp_path / "cnn.nir"))
    assert code == 1 and "no network.input_shape" in stderr and "--input-shape" in stderr
    code, stderr = errors_of(str(cnn), "--out", str(tmp_path / "cnn.nir"), "--input-shape", "12,12")
    assert code == 1 and "do not fit the spec with input shape [12, 12]" in stderr
    assert not (tmp_path / "cnn.nir").exists()
    assert CliRunner().invoke(app, ["export", str(cnn), "--out", str(tmp_path / "cnn.nir"),
                                    "--input-shape", "8,8"]).exit_code == 0

    other = tmp_path / "future"  # a spec this version does not know
    other.mkdir()
    spec_json = json.loads((trained_mlp / "spec.json").read_text())
    spec_json["network"]["layers"][0]["type"] = "recurrent"
    (other / "spec.json").write_text(json.dumps(spec_json))
    (other / "model.safetensors").write_bytes((trained_mlp / "model.safetensors").read_bytes())
    code, stderr = errors_of(str(other), "--out", str(tmp_path / "future.nir"))
    assert code == 1 and "invalid spec: network.layers.0" in stderr and stderr.count("\n") == 1
    assert not (tmp_path / "future.nir").exists()

    with pytest.raises(NirExportError, match="no such folder"):
        export_nir(trained_mlp, tmp_path / "absent" / "model.nir")


def test_a_graph_the_nir_package_rejects_is_a_one_line_error():
    nodes = {"input": nir.Input(input_type=np.array([3])), "linear": nir.Linear(weight=np.ones((2, 4), np.float32)),
             "output": nir.Output(output_type=np.array([2]))}
    with pytest.raises(NirExportError, match="the NIR package rejected the graph") as caught:
        _graph(nodes, [("input", "linear"), ("linear", "output")], {})
    assert "\n" not in str(caught.value)
