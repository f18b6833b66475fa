"""Power, Exp and Log: a function of ``shift + scale * x``, as computed by Caffe.

The constants are folded in float32, in the same order as Caffe's ``power_layer.cpp``,
``exp_layer.cpp`` and ``log_layer.cpp`` fold them (Caffe computes in ``Dtype = float``),
so the ONNX graph repeats Caffe's arithmetic rather than an algebraically equal one.
"""

from __future__ import annotations

import math

import numpy as np

from decoder.caffe_proto import caffe_pb2
from decoder.layers.context import ConversionContext
from decoder.layers.registry import register


def _chain(ctx: ConversionContext, value: str, steps: list[tuple[str, float]]) -> None:
    """Apply ``(op, constant)`` steps in order; the last one writes the layer's top."""
    if not steps:
        ctx.alias(value)
        return
    for index, (op, operand) in enumerate(steps):
        outputs: list[str] | int = [ctx.top()] if index == len(steps) - 1 else 1
        inputs = [value] if op in ("Exp", "Log") else [value, ctx.const(np.float32([operand]), op.lower())]
        value = ctx.node(op, inputs, outputs)[0]


@register("Power")
def convert_power(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """y = (shift + scale * x) ^ power; the DIGITS LeNet's input scaling (x 0.0125) is one."""
    param = layer.power_param
    power, scale, shift = np.float32(param.power), np.float32(param.scale), np.float32(param.shift)
    source = ctx.bottom()
    if power * scale == 0:
        # Caffe ignores the input here and fills the top with one value (power_layer.cpp).
        value = np.float32(1.0) if power == 0 else np.power(shift, power, dtype=np.float32)
        shape = ctx.node("Shape", [source])[0]
        ctx.node("Expand", [ctx.const(np.float32([value]), "value"), shape], [ctx.top()])
        return
    steps: list[tuple[str, float]] = []
    if scale != 1:
        steps.append(("Mul", float(scale)))
    if shift != 0:
        steps.append(("Add", float(shift)))
    if power != 1:
        steps.append(("Pow", float(power)))
    _chain(ctx, source, steps)


def _check_base(base: np.float32, ctx: ConversionContext) -> None:
    """Exp and Log take a strictly positive base, or -1 for e (Caffe's exp/log layer setup)."""
    if base != -1 and not base > 0:
        raise ctx.error(f"base must be strictly positive (or -1 for e), got {base:g}")


@register("Exp")
def convert_exp(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """y = base ^ (shift + scale * x), base -1 meaning e; computed as outer * exp(inner * x)."""
    param = layer.exp_param
    base, scale, shift = np.float32(param.base), np.float32(param.scale), np.float32(param.shift)
    _check_base(base, ctx)
    log_base = np.float32(1.0) if base == -1 else np.float32(math.log(base))
    inner = np.float32(log_base * scale)
    if shift == 0:
        outer = np.float32(1.0)
    else:
        outer = np.float32(math.exp(shift)) if base == -1 else np.float32(math.pow(base, shift))
    steps: list[tuple[str, float]] = []
    if inner != 1:
        steps.append(("Mul", float(inner)))
    steps.append(("Exp", 0.0))
    if outer != 1:
        steps.append(("Mul", float(outer)))
    _chain(ctx, ctx.bottom(), steps)


@register("Log")
def convert_log(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """y = log_base(shift + scale * x), base -1 meaning e."""
    param = layer.log_param
    base, scale, shift = np.float32(param.base), np.float32(param.scale), np.float32(param.shift)
    _check_base(base, ctx)
    if base == 1:
        raise ctx.error("base 1 has no logarithm")
    base_scale = np.float32(1.0) if base == -1 else np.float32(1.0 / math.log(base))
    steps: list[tuple[str, float]] = []
    if scale != 1:
        steps.append(("Mul", float(scale)))
    if shift != 0:
        steps.append(("Add", float(shift)))
    steps.append(("Log", 0.0))
    if base_scale != 1:
        steps.append(("Mul", float(base_scale)))
    _chain(ctx, ctx.bottom(), steps)
