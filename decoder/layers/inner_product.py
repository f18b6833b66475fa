"""InnerProduct: flatten from ``axis``, multiply by W [N, K] (or [K, N] with ``transpose``)."""

from __future__ import annotations

import numpy as np

from decoder.caffe_proto import caffe_pb2
from decoder.layers.context import ConversionContext
from decoder.layers.registry import register


@register("InnerProduct", needs_weights=True)
def convert_inner_product(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Flatten(axis) + Gemm; legacy 1x1xNxK weight blobs accepted by count."""
    param = layer.inner_product_param
    source = ctx.bottom()
    rank = len(ctx.shape(source))
    axis = param.axis if param.axis >= 0 else param.axis + rank
    if not 1 <= axis < rank:
        raise ctx.error(f"axis {param.axis} is not supported for a {rank}-D input (batch must stay first)")
    k = int(np.prod(ctx.static_dims(source, axis), dtype=np.int64))
    n = int(param.num_output)
    blobs = ctx.blobs(2 if param.bias_term else 1)
    if param.transpose:
        weight = ctx.reshape_blob(blobs[0], [k, n], "weight").T
    else:
        weight = ctx.reshape_blob(blobs[0], [n, k], "weight")
    bias = ctx.reshape_blob(blobs[1], [n], "bias") if param.bias_term else np.zeros(n, np.float32)
    if axis == 1:
        flat = source if rank == 2 else ctx.node("Flatten", [source], 1, axis=1)[0]
        ctx.node("Gemm", [flat, ctx.const(weight, "weight"), ctx.const(bias, "bias")], [ctx.top()], transB=1)
        return
    # axis > 1: keep the leading axes, as Caffe does (rare; MatMul broadcasts them).
    lead = ctx.shape(source)[:axis]
    shape = ctx.const([0 if i == 0 else int(d) for i, d in enumerate(lead)] + [k], "shape")
    flat = ctx.node("Reshape", [source, shape], 1)[0]
    product = ctx.node("MatMul", [flat, ctx.const(np.ascontiguousarray(weight.T), "weight_t")], 1)[0]
    ctx.node("Add", [product, ctx.const(bias, "bias")], [ctx.top()])
