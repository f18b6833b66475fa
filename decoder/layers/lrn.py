"""LRN across channels (ONNX LRN has Caffe's k + alpha/n * sum(x^2) form)."""

from __future__ import annotations

from decoder.caffe_proto import caffe_pb2
from decoder.layers.context import ConversionContext
from decoder.layers.registry import register

L = caffe_pb2.LRNParameter


@register("LRN")
def convert_lrn(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """ACROSS_CHANNELS maps to ONNX LRN directly."""
    param = layer.lrn_param
    if param.local_size % 2 == 0:
        raise ctx.error(f"local_size must be odd (Caffe requires it), got {param.local_size}")
    if param.norm_region != L.ACROSS_CHANNELS:
        raise ctx.error("only ACROSS_CHANNELS LRN is supported so far")
    ctx.node(
        "LRN",
        [ctx.bottom()],
        [ctx.top()],
        size=int(param.local_size),
        alpha=float(param.alpha),
        beta=float(param.beta),
        bias=float(param.k),
    )
