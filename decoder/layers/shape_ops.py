"""Layers that only move data: Flatten, Concat."""

from __future__ import annotations

from decoder.caffe_proto import caffe_pb2
from decoder.layers.context import ConversionContext
from decoder.layers.registry import register


@register("Flatten")
def convert_flatten(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Collapse axes ``axis`` .. ``end_axis`` into one (a Reshape with 0 = keep)."""
    source = ctx.bottom()
    shape = ctx.shape(source)
    rank = len(shape)
    start = layer.flatten_param.axis % rank
    end = layer.flatten_param.end_axis % rank
    if start == 0:
        raise ctx.error("flattening the batch axis is not supported (the batch stays dynamic)")
    if end < start:
        raise ctx.error(f"end_axis {layer.flatten_param.end_axis} comes before axis {layer.flatten_param.axis}")
    target = [0] * start + [-1] + [int(d) for d in shape[end + 1 :]]
    ctx.node("Reshape", [source, ctx.const(target, "shape")], [ctx.top()])


@register("Concat")
def convert_concat(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Concatenate along ``axis`` (or the deprecated ``concat_dim``)."""
    param = layer.concat_param
    axis = param.axis if param.HasField("axis") or not param.HasField("concat_dim") else param.concat_dim
    ctx.node("Concat", ctx.bottoms(), [ctx.top()], axis=int(axis))
