"""Eltwise: SUM (with ``coeff``), PROD, MAX of equally shaped bottoms (eltwise_layer.cpp)."""

from __future__ import annotations

import numpy as np

from decoder.caffe_proto import caffe_pb2
from decoder.layers.context import ConversionContext
from decoder.layers.registry import register

E = caffe_pb2.EltwiseParameter


@register("Eltwise")
def convert_eltwise(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Sum (each bottom times its ``coeff``), Mul or Max over all bottoms."""
    param = layer.eltwise_param
    bottoms = ctx.bottoms()
    if not bottoms:
        raise ctx.error("has no bottom blobs")
    shapes = {ctx.shape(b) for b in bottoms}
    if len(shapes) > 1:
        raise ctx.error(f"bottoms must have equal shapes (Caffe does not broadcast), got {sorted(map(list, shapes))}")
    if param.coeff and (param.operation != E.SUM or len(param.coeff) != len(bottoms)):
        raise ctx.error(f"coeff needs operation SUM and one value per bottom ({len(bottoms)}), got {len(param.coeff)}")
    if param.operation == E.SUM:
        terms = []
        for index, bottom in enumerate(bottoms):
            coeff = param.coeff[index] if param.coeff else 1.0
            if coeff == 1.0:
                terms.append(bottom)
            else:
                terms.append(ctx.node("Mul", [bottom, ctx.const(np.float32([coeff]), f"coeff{index}")])[0])
        ctx.node("Sum", terms, [ctx.top()])
    elif param.operation == E.PROD:
        value = bottoms[0]
        for index, bottom in enumerate(bottoms[1:], start=1):
            outputs: list[str] | int = [ctx.top()] if index == len(bottoms) - 1 else 1
            value = ctx.node("Mul", [value, bottom], outputs)[0]
        if len(bottoms) == 1:
            ctx.alias(value)
    elif param.operation == E.MAX:
        ctx.node("Max", bottoms, [ctx.top()])
    else:
        raise ctx.error(f"unknown operation {param.operation}")
