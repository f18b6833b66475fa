"""ArgMax: Caffe's top-k indices (as floats) and/or values, per instance or along ``axis``.

argmax_layer.cpp sorts (value, index) pairs with ``std::greater``, so among equal values
the LARGER index comes first; ONNX TopK prefers the smaller one. Running TopK on the
input reversed along the axis, and mapping index i back to (dim - 1 - i), gives Caffe's
order exactly, ties included.

Output shapes follow ArgMaxLayer::Reshape: with ``axis``, the input shape with that axis
set to ``top_k`` (values if ``out_max_val``, else indices); without, the input flattened
per instance, shaped (N, 1, top_k) padded with 1s to the input's rank (at least 3), and
with ``out_max_val`` (N, 2, top_k, ...): indices in channel 0, values in channel 1.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from decoder.caffe_proto import caffe_pb2
from decoder.layers.context import ConversionContext
from decoder.layers.registry import register

_INT64_MIN = np.iinfo(np.int64).min


def _top_k_caffe_order(ctx: ConversionContext, value: str, axis: int, dim: int, k: int) -> tuple[str, str]:
    """(values, float indices) of the k largest along ``axis``, ties broken as Caffe does."""
    reverse = [ctx.const([-1], "rev_start"), ctx.const([_INT64_MIN], "rev_end"), ctx.const([axis], "rev_axis")]
    reversed_value = ctx.node("Slice", [value, *reverse, ctx.const([-1], "rev_step")])[0]
    values, indices = ctx.node("TopK", [reversed_value, ctx.const([k], "k")], 2, axis=axis, largest=1, sorted=1)
    original = ctx.node("Sub", [ctx.const(np.int64([dim - 1]), "last"), indices])[0]
    return values, ctx.node("Cast", [original], 1, to=TensorProto.FLOAT)[0]


@register("ArgMax")
def convert_argmax(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """TopK along ``axis`` (or over each flattened instance); float indices, or values with ``out_max_val``."""
    param = layer.argmax_param
    source = ctx.bottom()
    rank = len(ctx.shape(source))
    k = int(param.top_k)
    if k < 1:
        raise ctx.error("top_k must be at least 1")
    if param.HasField("axis"):
        if not -rank <= param.axis < rank:
            raise ctx.error(f"axis {param.axis} is out of range for a {rank}-D input")
        axis = param.axis % rank
        if axis == 0:
            ctx.couple_batch("takes the ArgMax over the batch axis (axis 0)")
        dim = ctx.static_dims(source, axis)[0]
        if k > dim:
            raise ctx.error(f"top_k {k} exceeds the axis size {dim}")
        values, indices = _top_k_caffe_order(ctx, source, axis, dim, k)
        ctx.node("Identity", [values if param.out_max_val else indices], [ctx.top()])
        return
    dim = int(np.prod(ctx.static_dims(source), dtype=np.int64))
    if k > dim:
        raise ctx.error(f"top_k {k} exceeds the {dim} values of each instance")
    flat = source if rank == 2 else ctx.node("Flatten", [source], 1, axis=1)[0]
    values, indices = _top_k_caffe_order(ctx, flat, 1, dim, k)
    target = ctx.const([0, 1, k] + [1] * (max(rank, 3) - 3), "shape")
    if not param.out_max_val:
        ctx.node("Reshape", [indices, target], [ctx.top()])
        return
    parts = [ctx.node("Reshape", [part, target])[0] for part in (indices, values)]
    ctx.node("Concat", parts, [ctx.top()], axis=1)
