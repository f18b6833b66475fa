"""Layers that only move data: Flatten, Concat, Slice, Split, Reshape, Crop, Permute, Silence.

The batch axis stays dynamic: targets keep it with ONNX's "0 = copy this dimension"
wherever Caffe's own rule keeps it. A layer that mixes the images of a batch (Flatten,
Slice, Crop or Concat over axis 0, a Permute that moves the batch, a Reshape whose literal
batch is not provably the batch axis) calls ``ctx.couple_batch``: the net is then built with
the batch its prototxt declares and run that many images per call (never merging images).
"""

from __future__ import annotations

import itertools

import numpy as np

from decoder.caffe_proto import caffe_pb2
from decoder.layers.context import ConversionContext
from decoder.layers.registry import register


def _axis(ctx: ConversionContext, axis: int, rank: int, what: str = "axis") -> int:
    """Caffe's CanonicalAxisIndex: negative counts from the end; out of range is an error."""
    if not -rank <= axis < rank:
        raise ctx.error(f"{what} {axis} is out of range for a {rank}-D input")
    return axis % rank


@register("Flatten")
def convert_flatten(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Collapse axes ``axis`` .. ``end_axis`` into one (a Reshape with 0 = keep)."""
    source = ctx.bottom()
    shape = ctx.shape(source)
    rank = len(shape)
    start = _axis(ctx, layer.flatten_param.axis, rank)
    end = _axis(ctx, layer.flatten_param.end_axis, rank, "end_axis")
    if start == 0:
        ctx.couple_batch("flattens the batch axis (axis 0) into the images' values")
    if end < start:
        raise ctx.error(f"end_axis {layer.flatten_param.end_axis} comes before axis {layer.flatten_param.axis}")
    target = [0] * start + [-1] + list(ctx.static_dims(source, end + 1))
    ctx.node("Reshape", [source, ctx.const(target, "shape")], [ctx.top()])


@register("Concat")
def convert_concat(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Concatenate along ``axis`` (or the deprecated ``concat_dim``)."""
    param = layer.concat_param
    bottoms = ctx.bottoms()
    if param.HasField("axis") and param.HasField("concat_dim"):
        raise ctx.error("sets both axis and concat_dim")
    rank = len(ctx.shape(bottoms[0]))
    axis = param.concat_dim if param.HasField("concat_dim") else _axis(ctx, param.axis, rank)
    if len(bottoms) == 1:
        ctx.alias(bottoms[0])
        return
    if axis == 0:
        ctx.couple_batch("concatenates along the batch axis (axis 0)")
    ctx.node("Concat", bottoms, [ctx.top()], axis=int(axis))


@register("Slice")
def convert_slice(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Split along ``axis`` (or legacy ``slice_dim``) at ``slice_point``s, or into equal parts."""
    param = layer.slice_param
    source = ctx.bottom()
    rank = len(ctx.shape(source))
    axis = param.slice_dim if param.HasField("slice_dim") else _axis(ctx, param.axis, rank)
    if not 0 <= axis < rank:
        raise ctx.error(f"slicing axis {axis} is out of range for a {rank}-D input")
    if axis == 0:
        ctx.couple_batch("slices the batch axis (axis 0)")
    size = ctx.static_dims(source, axis)[0]
    count = len(layer.top)
    if param.slice_point:
        points = [int(p) for p in param.slice_point]
        if len(points) != count - 1:
            raise ctx.error(f"{len(points)} slice_point(s) need {len(points) + 1} tops, has {count}")
        bounds = [0, *points, size]
        if any(b <= a for a, b in itertools.pairwise(bounds)):
            raise ctx.error(f"slice points {points} must increase strictly within 1..{size - 1}")
        sizes = [b - a for a, b in itertools.pairwise(bounds)]
    else:
        if size % count:
            raise ctx.error(f"cannot split {size} into {count} equal parts")
        sizes = [size // count] * count
    if count == 1:
        ctx.alias(source)
        return
    ctx.node("Split", [source, ctx.const(np.int64(sizes), "split")], ctx.tops(), axis=int(axis))


@register("Split")
def convert_split(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Copies of the bottom under each top name (Identity nodes)."""
    source = ctx.bottom()
    for top in ctx.tops():
        ctx.node("Identity", [source], [top])


@register("Reshape")
def convert_reshape(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Replace axes [axis, axis + num_axes) by ``shape`` (0 copies that axis, one -1 is inferred)."""
    param = layer.reshape_param
    source = ctx.bottom()
    shape = ctx.shape(source)
    rank = len(shape)
    # reshape_layer.cpp: a negative axis counts from the end, -1 meaning "after the last".
    start = param.axis if param.axis >= 0 else param.axis + rank + 1
    if not 0 <= start <= rank:
        raise ctx.error(f"axis {param.axis} is out of range for a {rank}-D input")
    end = rank if param.num_axes == -1 else start + param.num_axes
    if param.num_axes < -1 or end > rank:
        raise ctx.error(f"num_axes {param.num_axes} does not fit a {rank}-D input from axis {start}")
    dims = [int(d) for d in param.shape.dim]
    if sum(d == -1 for d in dims) > 1 or any(d < -1 for d in dims):
        raise ctx.error(f"shape {dims} may hold one -1 and no other negative value")
    if any(d == 0 and start + i >= rank for i, d in enumerate(dims)):
        raise ctx.error(f"shape {dims} copies (0) an axis the input does not have")
    # ONNX's 0 copies the input dimension at the same index, exactly Caffe's rule for the
    # replaced span (copies of axis start + i land at output index start + i).
    target: list[int] = [0] * start + dims
    if start == 0 and dims and dims[0] != 0:
        target[0] = _batch_target(ctx, layer, shape[:end], dims)
    for dim in shape[end:]:
        if isinstance(dim, int):
            target.append(dim)
        elif -1 not in target:
            target.append(-1)
        else:
            raise ctx.error("moves the dynamic batch axis next to an inferred (-1) axis")
    ctx.node("Reshape", [source, ctx.const(target, "shape")], [ctx.top()])


def _batch_target(ctx: ConversionContext, layer: caffe_pb2.LayerParameter, span: tuple, dims: list[int]) -> int:
    """What to write on the batch axis of a Reshape whose shape starts with a literal or -1.

    Caffe's ``shape { dim: 1 dim: -1 dim: 2 }`` writes the batch as the number 1: given 2
    images, Caffe itself merges them into one row. Where that number is provably the batch
    (it equals the declared batch, or is -1, and the other dims account for exactly one
    image's values), writing 0 ("copy the batch") gives every batch size Caffe's per-image
    answer; otherwise the layer mixes images and the batch is kept at the declared one.
    """
    per_image = span[1:]
    first = dims[0]
    # a 0 copies the input axis at its own index (beyond the replaced span: not resolved here)
    rest = [(per_image[i] if i < len(per_image) else "?") if d == 0 else d for i, d in enumerate(dims[1:])]
    if all(isinstance(d, int) for d in per_image) and all(isinstance(d, int) for d in rest):
        values = int(np.prod(per_image, dtype=np.int64))
        known = int(np.prod([d for d in rest if d != -1], dtype=np.int64))
        fits = values % known == 0 if -1 in rest else known == values
        if first == -1 and -1 not in rest and fits:
            return 0  # the inferred axis is one image's rows: exactly the batch
        if first == ctx.declared_batch and fits:
            ctx.note_batch(
                f"writes the batch as {first} (shape {dims}): read as the batch axis (the other dims hold one "
                "image), so the batch stays dynamic"
            )
            return 0
    ctx.couple_batch(
        f"writes {first} on the batch axis (shape {dims}) where it is not provably the batch: images would mix"
        if first != -1
        else f"infers its first axis over the whole batch (shape {dims}), merging the images of a batch"
    )
    return first


def _crop_offsets(param: caffe_pb2.CropParameter) -> list[int]:
    """``offset`` values; our schema subset may not carry the field (then there are none)."""
    if "offset" not in param.DESCRIPTOR.fields_by_name:
        return []
    return [int(v) for v in getattr(param, "offset")]  # noqa: B009


@register("Crop")
def convert_crop(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Cut the first bottom to the second's size from ``axis`` on, starting at ``offset``."""
    param = layer.crop_param
    source, reference = ctx.bottoms(2)
    rank = len(ctx.shape(source))
    start = _axis(ctx, param.axis, rank)
    if start == 0:
        ctx.couple_batch("crops the batch axis (axis 0)")
    if len(ctx.shape(reference)) != rank:
        raise ctx.error("both bottoms must have the same number of axes")
    offsets = _crop_offsets(param)
    count = rank - start
    if len(offsets) == 1:
        offsets *= count
    elif not offsets:
        offsets = [0] * count
    elif len(offsets) != count:
        raise ctx.error(f"needs 0, 1 or {count} offsets for axes {start}.., has {len(offsets)}")
    sizes = ctx.static_dims(reference, start)
    have = ctx.static_dims(source, start)
    for axis, offset, size, available in zip(range(start, rank), offsets, sizes, have, strict=True):
        if offset + size > available:
            raise ctx.error(f"axis {axis}: offset {offset} + size {size} exceeds the input's {available}")
    ends = [o + s for o, s in zip(offsets, sizes, strict=True)]
    axes = list(range(start, rank))
    inputs = [source, ctx.const(offsets, "starts"), ctx.const(ends, "ends"), ctx.const(axes, "axes")]
    ctx.node("Slice", inputs, [ctx.top()])


@register("Permute")
def convert_permute(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Transpose to ``order``; axes it leaves out follow in their original order (SSD Caffe)."""
    source = ctx.bottom()
    rank = len(ctx.shape(source))
    order = [int(o) for o in layer.permute_param.order]
    if len(set(order)) != len(order) or any(o >= rank for o in order):
        raise ctx.error(f"order {order} must name distinct axes of a {rank}-D input")
    perm = order + [axis for axis in range(rank) if axis not in order]
    if perm[0] != 0:
        ctx.couple_batch(f"moves the batch axis (order {perm})")
    ctx.node("Transpose", [source], [ctx.top()], perm=perm)


@register("Silence")
def convert_silence(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Nothing: the layer only marks its bottoms as used, so they are not net outputs."""
    ctx.bottoms()
    if layer.top:
        raise ctx.error("a Silence layer has no tops")
