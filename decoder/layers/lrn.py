"""LRN: ACROSS_CHANNELS is ONNX's LRN; WITHIN_CHANNEL is decomposed the way Caffe builds it.

Caffe's ``lrn_layer.cpp`` computes WITHIN_CHANNEL with internal layers:
x^2 (Power), AVE pooling ``local_size`` x ``local_size`` with pad (local_size - 1) / 2 and
stride 1, then (1 + alpha * that)^(-beta) (Power), times x (Eltwise PROD). With stride 1
and that pad, every window stays inside [0, in + pad), so Caffe's AVE divisor is always the
full window area: ONNX AveragePool with ``count_include_pad`` gives the same mean. ``k`` is
not used by WITHIN_CHANNEL (Caffe's shift is the constant 1).
"""

from __future__ import annotations

import numpy as np

from decoder.caffe_proto import caffe_pb2
from decoder.layers.context import ConversionContext
from decoder.layers.registry import register

L = caffe_pb2.LRNParameter


@register("LRN")
def convert_lrn(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """ACROSS_CHANNELS: ONNX LRN; WITHIN_CHANNEL: x * (1 + alpha * AveragePool(x^2))^-beta."""
    param = layer.lrn_param
    size = int(param.local_size)
    if size % 2 == 0:
        raise ctx.error(f"local_size must be odd (Caffe requires it), got {size}")
    source = ctx.bottom()
    if len(ctx.shape(source)) != 4:
        raise ctx.error(f"needs a 4-D (N, C, H, W) input, got {list(ctx.shape(source))}")
    if param.norm_region == L.ACROSS_CHANNELS:
        ctx.node(
            "LRN",
            [source],
            [ctx.top()],
            size=size,
            alpha=float(param.alpha),
            beta=float(param.beta),
            bias=float(param.k),
        )
        return
    if param.norm_region != L.WITHIN_CHANNEL:
        raise ctx.error(f"unknown norm_region {param.norm_region}")
    pad = (size - 1) // 2
    squared = ctx.node("Mul", [source, source])[0]
    mean = ctx.node(
        "AveragePool", [squared], 1, kernel_shape=[size, size], strides=[1, 1], pads=[pad] * 4, count_include_pad=1
    )[0]
    scaled = ctx.node("Mul", [mean, ctx.const(np.float32([param.alpha]), "alpha")])[0]
    shifted = ctx.node("Add", [scaled, ctx.const(np.float32([1.0]), "one")])[0]
    factor = ctx.node("Pow", [shifted, ctx.const(np.float32([-param.beta]), "minus_beta")])[0]
    ctx.node("Mul", [source, factor], [ctx.top()])
