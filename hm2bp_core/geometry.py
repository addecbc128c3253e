"""Layer geometry: the shape each layer of ``network.layers`` outputs for a given sample shape,
written once for the layers (``layers.ConvLayer``, ``layers.PoolLayer``), the network builder and
the fit check that refuses a job at submit (``train.check_fit``).

Shapes are tuples of ints: ``(C, H, W)`` for maps (a 2-D sample ``H x W`` is one channel), ``(N,)``
for flat vectors. A conv layer computes ``H_out = (H + 2 p - k) // s + 1`` (valid cross-correlation);
a pool layer ``H // size`` (stride = size). Dense layers flatten what they get.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class GeometryError(ValueError):
    """A layer cannot take the shape it is given; the message starts with the spec field at fault."""


def conv_output(in_shape: tuple[int, int, int], channels: int, kernel: int, stride: int,
                padding: int) -> tuple[int, int, int]:
    """The ``C x H x W`` a conv layer makes of ``in_shape`` (a side < 1 means the kernel does not fit)."""
    _, h, w = in_shape
    return channels, (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1


def pool_output(in_shape: tuple[int, int, int], size: int) -> tuple[int, int, int]:
    """The ``C x H x W`` a pool layer makes of ``in_shape`` (a side < 1 means the window does not fit)."""
    c, h, w = in_shape
    return c, h // size, w // size


def _side(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def layer_shapes(layers: Sequence[Any], input_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """The output shape of each layer (spec layer configs: ``type``, ``kernel``, ``size``...) for
    samples of ``input_shape``; ``GeometryError`` naming the field (``network.layers[2].kernel``) and
    saying how to fix it when a conv or pool layer does not fit what reaches it."""
    shape = tuple(int(n) for n in input_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    path = [f"the dataset's samples ({_side(input_shape)})"]
    shapes: list[tuple[int, ...]] = []
    for k, cfg in enumerate(layers):
        where = f"network.layers[{k}]"
        if cfg.type in ("conv", "pool"):
            if len(shape) != 3:
                raise GeometryError(
                    f"{where}.type is {cfg.type!r} but its input is a flat vector of {shape[0]} values "
                    f"({' -> '.join(path)}); a {cfg.type} layer needs 2-D images or C x H x W maps: put it "
                    "before the dense layers, or use a dataset of images")
            if cfg.type == "conv":
                out = conv_output(shape, cfg.channels, cfg.kernel, cfg.stride, cfg.padding)
                if min(out[1:]) < 1:
                    raise GeometryError(
                        f"{where}.kernel is {cfg.kernel} but the layer's input is only {_side(shape[1:])} "
                        f"({' -> '.join(path)}); a {cfg.kernel}x{cfg.kernel} kernel with padding {cfg.padding} "
                        f"needs at least {max(cfg.kernel - 2 * cfg.padding, 1)}x{max(cfg.kernel - 2 * cfg.padding, 1)}"
                        ": use a smaller kernel, add padding, drop a pool layer before it, or use larger images")
                path.append(f"conv {_side(out[1:])}")
            else:
                out = pool_output(shape, cfg.size)
                if min(out[1:]) < 1:
                    raise GeometryError(
                        f"{where}.size is {cfg.size} but the layer's input is only {_side(shape[1:])} "
                        f"({' -> '.join(path)}); a {cfg.size}x{cfg.size} pool needs at least that: use a "
                        "smaller size, drop this layer, or use smaller kernels before it")
                path.append(f"pool {_side(out[1:])}")
            shape = out
        else:
            shape = (int(cfg.units),)
            path.append(f"dense {cfg.units}")
        shapes.append(shape)
    return shapes
