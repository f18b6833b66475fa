"""Pooling with Caffe's output size, last-window clip rule and AVE edge divisor.

Caffe (pooling_layer.cpp) rounds the output size UP by default and drops a last window
that would start inside the padding; AVE divides by the window clipped to
``[0, in + pad)``: padded cells count, overhang beyond the pad does not. ONNX's
``ceil_mode`` + ``count_include_pad`` cannot express that divisor, so AVE is computed as
a window SUM (AveragePool with count_include_pad times the window area) divided by a
constant map of Caffe's divisors. MAX ignores padding in both, so explicit end pads suffice.
"""

from __future__ import annotations

import math

import numpy as np

from decoder.caffe_proto import caffe_pb2
from decoder.layers.context import ConversionContext
from decoder.layers.registry import register

P = caffe_pb2.PoolingParameter


def caffe_pooled_size(size: int, kernel: int, stride: int, pad: int, round_up: bool, clip: bool | None = None) -> int:
    """Output length along one axis, exactly as PoolingLayer::Reshape computes it.

    ``clip``: whether the last-window rule applies. Caffe applies it on BOTH axes as soon
    as either pad is non-zero (``if (pad_h_ || pad_w_)``); default: this axis's pad.
    """
    rounding = math.ceil if round_up else math.floor
    out = int(rounding((size + 2 * pad - kernel) / stride)) + 1
    if (bool(pad) if clip is None else clip) and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def caffe_ave_divisors(size: int, kernel: int, stride: int, pad: int, out: int) -> np.ndarray:
    """Per-output-position divisor of Caffe's AVE pooling along one axis."""
    starts = np.arange(out) * stride - pad
    ends = np.minimum(starts + kernel, size + pad)
    return (ends - starts).astype(np.float64)


def _pair(param: P, plain: str, h: str, w: str, default: int | None, ctx: ConversionContext) -> list[int]:
    if param.HasField(h) or param.HasField(w):
        return [int(getattr(param, h)), int(getattr(param, w))]
    if param.HasField(plain) or default is None:
        if not param.HasField(plain):
            raise ctx.error("has no kernel_size (and is not global_pooling)")
        return [int(getattr(param, plain))] * 2
    return [default, default]


@register("Pooling")
def convert_pooling(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """MAX/AVE pooling, ceil or floor rounding, global pooling, Caffe's AVE divisor."""
    param = layer.pooling_param
    source = ctx.bottom()
    if len(ctx.shape(source)) != 4:
        raise ctx.error(f"needs a 4-D (N, C, H, W) input, got {list(ctx.shape(source))}")
    _, height, width = ctx.static_dims(source)
    if param.global_pooling:
        kernel, stride, pad = [height, width], [1, 1], [0, 0]
    else:
        kernel = _pair(param, "kernel_size", "kernel_h", "kernel_w", None, ctx)
        stride = _pair(param, "stride", "stride_h", "stride_w", 1, ctx)
        pad = _pair(param, "pad", "pad_h", "pad_w", 0, ctx)
    if any(p >= k for p, k in zip(pad, kernel, strict=True)):
        raise ctx.error(f"pad {pad} must be smaller than kernel {kernel}")
    round_up = param.round_mode == P.CEIL
    sizes = (height, width)
    clip = any(pad)
    out = [
        caffe_pooled_size(s, k, st, p, round_up, clip) for s, k, st, p in zip(sizes, kernel, stride, pad, strict=True)
    ]
    if any((o - 1) * st - p >= s for o, st, p, s in zip(out, stride, pad, sizes, strict=True)):
        # Only without padding and with stride > kernel: Caffe then emits a window that lies
        # wholly outside the input (-FLT_MAX for MAX, 0 for AVE); no model relies on that.
        raise ctx.error(f"its last window lies outside the input (kernel {kernel}, stride {stride}, no pad)")
    # End padding that makes ONNX produce exactly Caffe's windows (may be negative: unused rows).
    end_pad = [(o - 1) * st + k - s - p for o, st, k, s, p in zip(out, stride, kernel, sizes, pad, strict=True)]
    if any(e < 0 for e in end_pad):
        # Caffe's floor mode can leave trailing input rows unused; crop them first.
        keep = [s + min(e, 0) for s, e in zip(sizes, end_pad, strict=True)]
        starts = ctx.const([0, 0], "crop_starts")
        ends = ctx.const(keep, "crop_ends")
        axes = ctx.const([2, 3], "crop_axes")
        source = ctx.node("Slice", [source, starts, ends, axes])[0]
        sizes = tuple(keep)
        end_pad = [max(e, 0) for e in end_pad]
    pads = [pad[0], pad[1], end_pad[0], end_pad[1]]
    top = ctx.top()
    if param.pool == P.MAX:
        ctx.node("MaxPool", [source], [top], kernel_shape=kernel, strides=stride, pads=pads)
    elif param.pool == P.AVE:
        divisor_h = caffe_ave_divisors(height, kernel[0], stride[0], pad[0], out[0])
        divisor_w = caffe_ave_divisors(width, kernel[1], stride[1], pad[1], out[1])
        area = kernel[0] * kernel[1]
        factor = area / np.outer(divisor_h, divisor_w)
        pooled = ctx.node(
            "AveragePool", [source], 1, kernel_shape=kernel, strides=stride, pads=pads, count_include_pad=1
        )[0]
        if np.allclose(factor, 1.0):
            ctx.node("Identity", [pooled], [top])
        else:
            scale = ctx.const(factor.reshape(1, 1, *out).astype(np.float32), "ave_divisor")
            ctx.node("Mul", [pooled, scale], [top])
    else:
        raise ctx.error("only MAX and AVE pooling are supported (STOCHASTIC pooling is random at test time)")
