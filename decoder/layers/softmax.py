"""Softmax over Caffe's ``axis`` (default 1, the channels, also on 4-D maps)."""

from __future__ import annotations

from decoder.caffe_proto import caffe_pb2
from decoder.layers.context import ConversionContext
from decoder.layers.registry import register


@register("Softmax")
def convert_softmax(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """ONNX Softmax (opset >= 13 normalises over one axis, exactly like Caffe)."""
    ctx.node("Softmax", [ctx.bottom()], [ctx.top()], axis=int(layer.softmax_param.axis))
