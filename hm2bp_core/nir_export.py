"""Export a trained network to NIR, the Neuromorphic Intermediate Representation (docs/nir.md).

Each spiking layer k becomes a linear map and a ``CubaLIF`` population (names sort in graph order)::

    dense   layerKK.0_flatten (after conv/pool only) -> layerKK.1_linear Linear(W)  -> layerKK.2_lif
    conv    layerKK.1_conv Conv2d(K, stride, padding, bias 0)                         -> layerKK.2_lif
    pool    layerKK.1_pool SumPool2d(size, stride size): unit weights over a window   -> layerKK.2_lif
    output  the same; with lateral inhibition w0 > 0, layerKK.2_lif is the sub-graph
            input -> lif -> output, lif -> w_rec -> lif, w_rec = Linear(-w0 (1 - Id))

NIR's CubaLIF, with the parameters written here (tau in seconds, dt seconds per step)::

    tau_syn dI/dt = -I + w_in S                tau_syn = tau_s dt,  w_in = 1
    tau_mem dv/dt = (v_leak - v) + r I         tau_mem = tau_m dt,  r = tau_m,  v_leak = 0
    v > v_threshold -> spike, v := v_reset     v_threshold = nu - 1e-6 (dense, pool) or nu (conv), v_reset = 0

stepped by forward Euler at dt with a spike counted as 1 in its step, as snnTorch's importer
steps it (I += (dt/tau_syn)(-I + w_in S) = -I/tau_s + S/tau_s; v += (dt/tau_mem)(-v + r I) = -v/tau_m + I),
is our discrete LIF (:mod:`hm2bp_core.neuron`) with I = x/tau_s: x -= x/tau_s; x += W s; v -= v/tau_m; v += x/tau_s.

What NIR cannot state is written into the metadata (graph and each ``lif`` node): the step dt,
the absolute refractory period (v held at 0 for ``refractory_steps`` steps after a spike), the
one-step delay before a layer's input reaches its synapse (what our layer k, from 0, spikes at t
an importer's spikes at t - k - 1), the threshold test, the rate encoding and the spike-count
readout.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .layers import ConvLayer, DenseLayer, PoolLayer
from .network import SpikingNetwork
from .neuron import THRESHOLD_SLACK, firing_threshold

if TYPE_CHECKING:
    import nir

DEFAULT_DT = 1e-4  # seconds per step: the step that snnTorch's NIR importer hard-codes
FORMAT = "hm2bp-nir/1"  # the layout of names and metadata described in docs/nir.md


class NirExportError(ValueError):
    """A model that cannot be exported, or a graph that the NIR package rejects (one-line message)."""


def _nir():
    try:
        import nir
    except ImportError:
        raise NirExportError("NIR export needs the `nir` package: pip install 'hm2bp[nir]'") from None
    return nir


def _lif(layer, shape: tuple[int, ...], dt: float) -> nir.CubaLIF:
    """The CubaLIF population of ``layer`` (module docstring), its parameters of shape ``shape``."""
    nir = _nir()
    p = layer.neuron
    strict = getattr(layer, "strict_threshold", False)  # conv layers test v > nu, the others v > nu - 1e-6

    def full(value: float, dtype=np.float32) -> np.ndarray:
        return np.full(shape, value, dtype=dtype)

    return nir.CubaLIF(
        tau_syn=full(p.tau_s * dt, np.float64),
        tau_mem=full(p.tau_m * dt, np.float64),
        r=full(p.tau_m, np.float64),
        v_leak=full(0.0),
        v_threshold=full(firing_threshold(layer.threshold, strict)),
        v_reset=full(0.0),
        w_in=full(1.0),
        metadata={
            "threshold": float(layer.threshold),
            "threshold_test": "v > nu" if strict else f"v > nu - {THRESHOLD_SLACK:g}",
            "refractory_steps": int(p.refractory),
            "input_delay_steps": 1,
            "tau_m_steps": float(p.tau_m),
            "tau_s_steps": float(p.tau_s),
            "lateral_inhibition": float(layer.lateral),
        },
    )


def _graph_metadata(net: SpikingNetwork, dt: float) -> dict[str, Any]:
    spec = net.spec
    enc = spec.encoding
    return {
        "source": "hm2bp",
        "format": FORMAT,
        "dt": float(dt),
        "time_steps": int(enc.time_steps),
        "discretisation": "forward Euler at dt; a spike is 1 in its step",
        "refractory_steps": int(net.neuron.refractory),
        "input_delay_steps_per_layer": 1,
        "encoding": {
            "kind": enc.kind,
            "max_rate": float(enc.max_rate),
            "description": ("Bernoulli spikes, p = intensity * max_rate per step for steps 1..T-1, none at step 0"
                            if enc.kind == "rate" else "the inputs are spike rasters of time_steps frames"),
        },
        "output_delay_steps": len(net.layers),
        "readout": ("class = argmax of the output layer's spike counts over our time_steps steps (the first on a tie); "
                    "a simulator of this graph, which has no input delays, counts its first "
                    "time_steps - output_delay_steps steps"),
        "spec": spec.to_json(),
    }


def input_shape_of(net: SpikingNetwork) -> tuple[int, ...]:
    """The shape of one input sample of ``net``: (D,) for a dense first layer, (C, H, W) otherwise."""
    first = net.layers[0]
    if isinstance(first, DenseLayer):
        return (int(first.weight.shape[1]),)
    assert isinstance(first, (ConvLayer, PoolLayer))  # the only other layer kinds
    return tuple(first.in_shape)


def network_to_nir(net: SpikingNetwork, *, dt: float = DEFAULT_DT) -> nir.NIRGraph:
    """The NIR graph of ``net`` (module docstring); raises NirExportError if NIR rejects it."""
    nir = _nir()
    if not dt > 0:
        raise NirExportError(f"dt must be a positive number of seconds per step, got {dt}")
    shape = input_shape_of(net)
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array(shape))}
    edges: list[tuple[str, str]] = []
    last = "input"

    def add(name: str, node) -> None:
        nonlocal last
        nodes[name] = node
        edges.append((last, name))
        last = name

    for k, layer in enumerate(net.layers):
        prefix = f"layer{k:02d}"
        if isinstance(layer, ConvLayer):
            weight = layer.weight.detach().cpu().numpy().astype(np.float32)
            add(f"{prefix}.1_conv", nir.Conv2d(
                input_shape=np.array(shape[1:]), weight=weight, stride=np.array([layer.stride] * 2),
                padding=np.array([layer.padding] * 2), dilation=np.array([1, 1]), groups=1,
                bias=np.zeros(weight.shape[0], dtype=np.float32)))
            shape = tuple(layer.out_shape)
        elif isinstance(layer, PoolLayer):
            size = np.array([layer.size] * 2)
            add(f"{prefix}.1_pool", nir.SumPool2d(kernel_size=size, stride=size, padding=np.array([0, 0])))
            shape = tuple(layer.out_shape)
        elif isinstance(layer, DenseLayer):
            if len(shape) > 1:
                add(f"{prefix}.0_flatten", nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1))
            weight = layer.weight.detach().cpu().numpy().astype(np.float32)
            add(f"{prefix}.1_linear", nir.Linear(weight=weight))
            shape = (layer.units,)
        else:
            raise NirExportError(f"network.layers[{k}]: a {type(layer).__name__} has no NIR form")
        lif = _lif(layer, shape, dt)
        if layer.lateral:
            # each neuron inhibits every other one by w0 (algorithm section 2.4): recurrent edges lif -> w_rec -> lif
            w_rec = -layer.lateral * (1.0 - np.eye(shape[0], dtype=np.float32))
            sub = {"input": nir.Input(input_type=np.array(shape)), "lif": lif,
                   "w_rec": nir.Linear(weight=w_rec.astype(np.float32)),
                   "output": nir.Output(output_type=np.array(shape))}
            sub_edges = [("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")]
            add(f"{prefix}.2_lif", _graph(sub, sub_edges, {"lateral_inhibition": float(layer.lateral)}))
        else:
            add(f"{prefix}.2_lif", lif)
    add("output", nir.Output(output_type=np.array(shape)))
    return _graph(nodes, edges, _graph_metadata(net, dt))


def _graph(nodes, edges, metadata) -> nir.NIRGraph:
    nir = _nir()
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)
    except Exception as exc:  # the nir package raises ValueError, AssertionError, KeyError ... on a bad graph
        raise NirExportError(f"the NIR package rejected the graph: {type(exc).__name__}: {exc}") from None


def load_network(model_dir: str | Path, input_shape: tuple[int, ...] | None = None) -> SpikingNetwork:
    """The trained network of a folder written by ``hm2bp train`` (or a service job's artifacts).

    The input shape comes from ``input_shape``, else the spec's ``network.input_shape``, else (for a
    network whose first layer is dense) from the first weight matrix.
    """
    from pydantic import ValidationError

    from .checkpoint import load_model
    from .spec import TrainingSpec

    folder = Path(model_dir)
    if not folder.is_dir():
        raise NirExportError(f"{folder}: not a model folder (no such directory)")
    try:
        weights, spec_json = load_model(folder)
    except FileNotFoundError as exc:
        raise NirExportError(f"{folder}: not a model folder ({exc})") from None
    except Exception as exc:  # a damaged file: safetensors raises its own SafetensorError
        raise NirExportError(f"{folder}: unreadable model file: {exc}") from None
    try:
        spec = TrainingSpec.model_validate_json(spec_json)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        raise NirExportError(f"{folder}: invalid spec: {where}: {first['msg']}") from None
    declared = tuple(spec.network.input_shape) if spec.network.input_shape else None
    shape = tuple(input_shape) if input_shape else declared
    if shape is None:
        if spec.network.layers[0].type != "dense" or "layers.0.weight" not in weights:
            raise NirExportError(f"{folder}: the spec has no network.input_shape and the first layer is "
                                 f"{spec.network.layers[0].type}; give the input shape (e.g. --input-shape 28,28)")
        shape = (int(weights["layers.0.weight"].shape[1]),)
    try:
        net = SpikingNetwork(spec, shape, "cpu")
        net.load_state_dict(weights)
    except KeyError as exc:
        raise NirExportError(f"{folder}: the model file has no weight {exc} that the spec's network needs") from None
    except ValueError as exc:
        raise NirExportError(
            f"{folder}: the weights do not fit the spec with input shape {list(shape)}: {exc}") from None
    return net


def export_nir(source: str | Path | SpikingNetwork, path: str | Path, *, dt: float = DEFAULT_DT,
               input_shape: tuple[int, ...] | None = None) -> Path:
    """Write the NIR file (HDF5) of a model folder or a network to ``path``; returns ``path``.

    The file appears whole or not at all (written to a temporary name in the same folder, then
    renamed). Raises :class:`NirExportError`, with a one-line message, for a folder that is not a
    model, a network NIR cannot describe, or a graph the NIR package rejects.
    """
    nir = _nir()
    net = source if isinstance(source, SpikingNetwork) else load_network(source, input_shape)
    graph = network_to_nir(net, dt=dt)
    target = Path(path)
    if not target.parent.is_dir():
        raise NirExportError(f"{target.parent}: no such folder to write {target.name} into")
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        nir.write(temporary, graph)
        os.replace(temporary, target)
    except Exception as exc:
        Path(temporary).unlink(missing_ok=True)
        raise NirExportError(f"the NIR package could not write the graph: {type(exc).__name__}: {exc}") from None
    return target
