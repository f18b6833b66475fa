"""BatchNorm (BVLC and NVIDIA Caffe blob layouts), Scale and Bias.

BatchNorm's trained blobs mean different things in different Caffes:

* BVLC (``batch_norm_layer.cpp``): ``[mean * s, var * s, s]``, where ``s`` is the running
  sum of the moving-average weights; the statistics are ``mean / s`` and ``var / s``
  (0 when ``s == 0``). No affine part: a Scale layer follows.
* NVIDIA Caffe 0.15 (branch caffe-0.15): ``[scale, bias, mean, var, iter]``, statistics
  used as stored, then ``* scale + bias``.
* NVIDIA Caffe 0.16/0.17: ``[mean, var, correction]``, plus ``[scale, bias]`` with
  ``scale_bias``; at TEST the statistics are used as stored (``correction`` is not read)
  and ``eps`` is raised to at least 1e-5.

Five blobs are told apart by which one holds a single value (0.15's ``iter`` is last,
0.16's ``correction`` is third). Three blobs are BVLC's layout unless the caffe flavour
(info.json's "caffe flavor") is NVIDIA and ``s == 1``: NVIDIA 0.16+ never changes its
``correction`` blob from 1, whereas BVLC-style code (also NVIDIA <= 0.14) accumulates it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from decoder.caffe_proto import caffe_pb2
from decoder.layers.context import ConversionContext
from decoder.layers.registry import register

#: NVIDIA Caffe 0.16+ raises eps to at least this (``eps_ = std::max(param.eps(), 1e-5f)``).
NVIDIA_MIN_EPS = np.float32(1e-5)


@dataclass
class _BatchNormStats:
    mean: np.ndarray
    var: np.ndarray
    eps: float
    scale: np.ndarray | None = None
    bias: np.ndarray | None = None
    #: False: Caffe normalises with the statistics of the current batch (see below).
    use_global_stats: bool = True


def _is_nvidia(ctx: ConversionContext) -> bool:
    flavor = ctx.caffe_flavor
    return bool(flavor) and str(flavor).strip().lower().startswith("nvidia")


def _batch_norm_stats(layer: caffe_pb2.LayerParameter, ctx: ConversionContext, channels: int) -> _BatchNormStats:
    param = layer.batch_norm_param
    eps = np.float32(param.eps)
    # BVLC and NVIDIA 0.15: use_global_stats defaults to (phase == TEST), i.e. true here.
    global_stats = param.use_global_stats if param.HasField("use_global_stats") else True
    blobs = ctx.blobs(3, 5)

    def per_channel(index: int, what: str) -> np.ndarray:
        return ctx.reshape_blob(blobs[index], [channels], what).astype(np.float32)

    if len(blobs) == 5:
        nvidia_015 = blobs[4].size == 1 and (blobs[2].size != 1 or not _has_scale_bias(param))
        if nvidia_015:
            return _BatchNormStats(
                per_channel(2, "mean"),
                per_channel(3, "variance"),
                float(eps),
                per_channel(0, "scale"),
                per_channel(1, "bias"),
                global_stats,
            )
        if blobs[2].size != 1:
            raise ctx.error(
                "has 5 blobs, but neither NVIDIA Caffe 0.15's [scale, bias, mean, var, iter] "
                "nor 0.16's [mean, var, correction, scale, bias] layout"
            )
        return _BatchNormStats(
            per_channel(0, "mean"),
            per_channel(1, "variance"),
            float(max(eps, NVIDIA_MIN_EPS)),
            per_channel(3, "scale"),
            per_channel(4, "bias"),
            True,
        )
    factor_blob = ctx.reshape_blob(blobs[2], [1], "moving-average factor")
    factor = np.float32(factor_blob[0])
    if _is_nvidia(ctx) and factor == 1:
        return _BatchNormStats(per_channel(0, "mean"), per_channel(1, "variance"), float(max(eps, NVIDIA_MIN_EPS)))
    inverse = np.float32(0.0) if factor == 0 else np.float32(1.0) / factor
    return _BatchNormStats(
        per_channel(0, "mean") * inverse,
        per_channel(1, "variance") * inverse,
        float(eps),
        use_global_stats=global_stats,
    )


def _has_scale_bias(param: caffe_pb2.BatchNormParameter) -> bool:
    return param.scale_bias or param.HasField("scale_filler") or param.HasField("bias_filler")


def _reduce_mean(ctx: ConversionContext, value: str, axes: list[int]) -> str:
    """ReduceMean keeping dims; its axes moved from attribute to input in opset 18."""
    if ctx.opset >= 18:
        return ctx.node("ReduceMean", [value, ctx.const(np.int64(axes), "axes")], 1, keepdims=1)[0]
    return ctx.node("ReduceMean", [value], 1, axes=axes, keepdims=1)[0]


@register("BatchNorm", needs_weights=True)
def convert_batch_norm(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """(x - mean) / sqrt(var + eps) per channel; BVLC scale factor, NVIDIA 0.15 / 0.16 layouts."""
    source = ctx.bottom()
    rank = len(ctx.shape(source))
    if rank < 2:
        raise ctx.error("needs an input with a channel axis (at least 2-D)")
    channels = ctx.static_dims(source)[0]
    stats = _batch_norm_stats(layer, ctx, channels)
    scale = stats.scale if stats.scale is not None else np.ones(channels, np.float32)
    bias = stats.bias if stats.bias is not None else np.zeros(channels, np.float32)
    if stats.use_global_stats:
        inputs = [source, ctx.const(scale, "scale"), ctx.const(bias, "bias")]
        inputs += [ctx.const(stats.mean, "mean"), ctx.const(stats.var, "variance")]
        ctx.node("BatchNormalization", inputs, [ctx.top()], epsilon=stats.eps)
        return
    # use_global_stats: false in a deploy net: Caffe normalises every forward pass with the
    # mean and (biased) variance of the batch it is given, over all axes but the channels.
    # Outputs then depend on the batch: the net keeps the batch its prototxt declares, so
    # each call normalises over that many images, never over images that merely share a call.
    ctx.couple_batch("normalises with the statistics of the batch (use_global_stats: false)")
    axes = [0, *range(2, rank)]
    centred = ctx.node("Sub", [source, _reduce_mean(ctx, source, axes)])[0]
    variance = _reduce_mean(ctx, ctx.node("Mul", [centred, centred])[0], axes)
    denominator = ctx.node("Sqrt", [ctx.node("Add", [variance, ctx.const(np.float32([stats.eps]), "eps")])[0]])[0]
    normalised = ctx.node("Div", [centred, denominator])[0]
    if stats.scale is None:
        ctx.node("Identity", [normalised], [ctx.top()])
        return
    shape = [channels] + [1] * (rank - 2)
    scaled = ctx.node("Mul", [normalised, ctx.const(scale.reshape(shape), "scale")])[0]
    ctx.node("Add", [scaled, ctx.const(bias.reshape(shape), "bias")], [ctx.top()])


def _broadcast_axes(ctx: ConversionContext, source: str, axis: int, num_axes: int, what: str) -> tuple[int, int]:
    """Caffe's (axis, num_axes) of a Scale/Bias operand, made non-negative and checked."""
    rank = len(ctx.shape(source))
    start = axis + rank if axis < 0 else axis
    if not 0 <= start <= rank:
        raise ctx.error(f"axis {axis} is out of range for a {rank}-D input")
    count = rank - start if num_axes == -1 else num_axes
    if count < 0 or start + count > rank:
        raise ctx.error(f"{what} axes [{axis}, +{num_axes}) do not fit a {rank}-D input")
    return start, count


def _operand(ctx: ConversionContext, source: str, blob: np.ndarray, start: int, count: int, what: str) -> str:
    """A learned Scale/Bias blob, shaped to broadcast from ``start`` over ``count`` axes."""
    rank = len(ctx.shape(source))
    if count == 0:
        return ctx.const(ctx.reshape_blob(blob, [1], what), what)
    if start == 0:
        ctx.couple_batch(f"applies a learned {what} over the batch axis (axis 0)")
    dims = ctx.static_dims(source, start)[:count]
    array = ctx.reshape_blob(blob, dims, what).reshape([*dims] + [1] * (rank - start - count))
    return ctx.const(array, what)


def _bottom_operand(ctx: ConversionContext, source: str, operand: str, axis: int) -> str:
    """A second-bottom Scale/Bias operand, unsqueezed so that it broadcasts from ``axis``."""
    rank = len(ctx.shape(source))
    operand_rank = len(ctx.shape(operand))
    start = 0 if operand_rank == 0 else (axis + rank if axis < 0 else axis)
    if start + operand_rank > rank:
        raise ctx.error(f"the second bottom ({operand_rank}-D) does not fit the first from axis {axis}")
    trailing = rank - start - operand_rank
    if trailing == 0:
        return operand
    axes = ctx.const(np.int64(list(range(operand_rank, operand_rank + trailing))), "unsqueeze_axes")
    return ctx.node("Unsqueeze", [operand, axes])[0]


@register("Scale")
def convert_scale(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """x * scale (+ bias), the factor learned or given as a second bottom, from ``axis`` on ``num_axes``."""
    param = layer.scale_param
    bottoms = ctx.bottoms()
    if len(bottoms) not in (1, 2):
        raise ctx.error(f"expects 1 or 2 bottom blobs, has {len(bottoms)}")
    source = bottoms[0]
    expected = (1 if len(bottoms) == 1 else 0) + (1 if param.bias_term else 0)
    blobs = ctx.blobs(expected) if expected else []
    if len(bottoms) == 2:
        factor = _bottom_operand(ctx, source, bottoms[1], param.axis)
        rank, operand_rank = len(ctx.shape(source)), len(ctx.shape(bottoms[1]))
        start = 0 if operand_rank == 0 else (param.axis + rank if param.axis < 0 else param.axis)
        count = operand_rank
    else:
        start, count = _broadcast_axes(ctx, source, param.axis, param.num_axes, "scale")
        factor = _operand(ctx, source, blobs[0], start, count, "scale")
    if not param.bias_term:
        ctx.node("Mul", [source, factor], [ctx.top()])
        return
    scaled = ctx.node("Mul", [source, factor])[0]
    bias = _operand(ctx, source, blobs[-1], start, count, "bias")
    ctx.node("Add", [scaled, bias], [ctx.top()])


@register("Bias")
def convert_bias(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """x + bias, the bias learned or given as a second bottom, from ``axis`` on ``num_axes``."""
    param = layer.bias_param
    bottoms = ctx.bottoms()
    if len(bottoms) == 2:
        ctx.node("Add", [bottoms[0], _bottom_operand(ctx, bottoms[0], bottoms[1], param.axis)], [ctx.top()])
        return
    if len(bottoms) != 1:
        raise ctx.error(f"expects 1 or 2 bottom blobs, has {len(bottoms)}")
    (blob,) = ctx.blobs(1)
    start, count = _broadcast_axes(ctx, bottoms[0], param.axis, param.num_axes, "bias")
    ctx.node("Add", [bottoms[0], _operand(ctx, bottoms[0], blob, start, count, "bias")], [ctx.top()])
