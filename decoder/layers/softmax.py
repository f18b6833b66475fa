"""Softmax over Caffe's ``axis`` (default 1, the channels, also on 4-D maps)."""

from __future__ import annotations

from decoder.caffe_proto import caffe_pb2
from decoder.layers.context import ConversionContext
from decoder.layers.registry import register


@register("Softmax")
def convert_softmax(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """ONNX Softmax (opset >= 13 normalises over one axis, exactly like Caffe)."""
    source = ctx.bottom()
    rank = len(ctx.shape(source))
    axis = int(layer.softmax_param.axis)
    if not -rank <= axis < rank:
        raise ctx.error(f"axis {axis} is out of range for a {rank}-D input")
    if axis % rank == 0:
        ctx.couple_batch("normalises over the batch axis (axis 0)")
    ctx.node("Softmax", [source], [ctx.top()], axis=axis)
