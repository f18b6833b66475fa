"""Element-wise layers: ReLU, Power, Dropout (identity at inference)."""

from __future__ import annotations

from decoder.caffe_proto import caffe_pb2
from decoder.layers.context import ConversionContext
from decoder.layers.registry import register


@register("ReLU")
def convert_relu(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """ReLU, or LeakyRelu when ``negative_slope`` is set."""
    slope = layer.relu_param.negative_slope
    if slope:
        ctx.node("LeakyRelu", [ctx.bottom()], [ctx.top()], alpha=float(slope))
    else:
        ctx.node("Relu", [ctx.bottom()], [ctx.top()])


@register("Power")
def convert_power(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """y = (shift + scale * x) ^ power; the DIGITS LeNet's input scaling (x 0.0125) is one."""
    param = layer.power_param
    value = ctx.bottom()
    steps: list[tuple[str, float]] = []
    if param.scale != 1.0:
        steps.append(("Mul", param.scale))
    if param.shift != 0.0:
        steps.append(("Add", param.shift))
    if param.power != 1.0:
        steps.append(("Pow", param.power))
    if not steps:
        ctx.alias(value)
        return
    for index, (op, operand) in enumerate(steps):
        outputs: list[str] | int = [ctx.top()] if index == len(steps) - 1 else 1
        value = ctx.node(op, [value, ctx.const([operand], op.lower())], outputs)[0]


@register("Dropout")
def convert_dropout(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Identity: Caffe's Dropout scales at TRAIN time, so inference passes values through."""
    ctx.alias(ctx.bottom())
