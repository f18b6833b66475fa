"""Element-wise activations: ReLU, PReLU, ELU, Sigmoid, TanH, AbsVal, BNLL, Threshold, Clip, Dropout.

Each follows the forward pass of the matching ``src/caffe/layers/*_layer.cpp`` of BVLC Caffe.
Power, Exp and Log (``f(shift + scale * x)``) live in :mod:`decoder.layers.power`.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

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


@register("PReLU", needs_weights=True)
def convert_prelu(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """PRelu with one learned slope per channel (axis 1), or one for all with ``channel_shared``."""
    source = ctx.bottom()
    rank = len(ctx.shape(source))
    (slope,) = ctx.blobs(1)
    if layer.prelu_param.channel_shared:
        slope = ctx.reshape_blob(slope, [1], "slope")
    else:
        # Caffe: channels = shape(1) (1 for a 1-D blob), slopes broadcast over axes 2..end.
        channels = ctx.static_dims(source)[0] if rank > 1 else 1
        slope = ctx.reshape_blob(slope, [channels] + [1] * max(rank - 2, 0), "slope")
    ctx.node("PRelu", [source, ctx.const(slope, "slope")], [ctx.top()])


@register("ELU")
def convert_elu(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Elu: x if x > 0 else alpha * (exp(x) - 1)."""
    ctx.node("Elu", [ctx.bottom()], [ctx.top()], alpha=float(layer.elu_param.alpha))


@register("Sigmoid")
def convert_sigmoid(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Sigmoid: 1 / (1 + exp(-x))."""
    ctx.node("Sigmoid", [ctx.bottom()], [ctx.top()])


@register("TanH")
def convert_tanh(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Tanh: the hyperbolic tangent."""
    ctx.node("Tanh", [ctx.bottom()], [ctx.top()])


@register("AbsVal")
def convert_absval(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Abs: |x|."""
    ctx.node("Abs", [ctx.bottom()], [ctx.top()])


@register("BNLL")
def convert_bnll(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """log(1 + exp(x)), in Caffe's overflow-free form max(x, 0) + log(1 + exp(-|x|))."""
    # ONNX Softplus is the same function, but runtimes differ in how they guard exp(x)
    # against overflow for large x; this form is exact everywhere with plain ops.
    source = ctx.bottom()
    positive = ctx.node("Relu", [source])[0]
    magnitude = ctx.node("Abs", [source])[0]
    negated = ctx.node("Neg", [magnitude])[0]
    exponential = ctx.node("Exp", [negated])[0]
    one_plus = ctx.node("Add", [exponential, ctx.const(np.float32([1.0]), "one")])[0]
    logarithm = ctx.node("Log", [one_plus])[0]
    ctx.node("Add", [positive, logarithm], [ctx.top()])


@register("Threshold")
def convert_threshold(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """1.0 where x > threshold, else 0.0 (a float mask, as Caffe outputs)."""
    threshold = ctx.const(np.float32([layer.threshold_param.threshold]), "threshold")
    mask = ctx.node("Greater", [ctx.bottom(), threshold])[0]
    ctx.node("Cast", [mask], [ctx.top()], to=TensorProto.FLOAT)


@register("Clip")
def convert_clip(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Clip to [min, max] (Caffe's ClipLayer: max(min, min(x, max)))."""
    param = layer.clip_param
    if param.min > param.max:
        raise ctx.error(f"min {param.min} is larger than max {param.max}")
    low = ctx.const(np.float32(param.min), "min")
    high = ctx.const(np.float32(param.max), "max")
    ctx.node("Clip", [ctx.bottom(), low, high], [ctx.top()])


@register("Dropout")
def convert_dropout(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Identity: Caffe's Dropout scales at TRAIN time, so inference passes values through."""
    ctx.alias(ctx.bottom())
