"""Convolution and Deconvolution: kernel/stride/pad/dilation (scalars or _h/_w), group, bias_term."""

from __future__ import annotations

from decoder.caffe_proto import caffe_pb2
from decoder.layers.context import ConversionContext
from decoder.layers.registry import register


def spatial_params(param: caffe_pb2.ConvolutionParameter, ctx: ConversionContext) -> dict[str, list[int]]:
    """kernel, stride, pad, dilation as [h, w] lists, with Caffe's precedence (_h/_w win)."""

    def pair(repeated: list[int], h_field: str, w_field: str, default: int | None) -> list[int]:
        if param.HasField(h_field) or param.HasField(w_field):
            if len(repeated):
                raise ctx.error(f"sets both {h_field}/{w_field} and the plain form")
            return [int(getattr(param, h_field)), int(getattr(param, w_field))]
        values = [int(v) for v in repeated]
        if not values:
            if default is None:
                raise ctx.error("has no kernel_size")
            return [default, default]
        if len(values) == 1:
            return values * 2
        if len(values) == 2:
            return values
        raise ctx.error(f"only 2-D convolution is supported (got {len(values)} spatial values)")

    params = {
        "kernel": pair(list(param.kernel_size), "kernel_h", "kernel_w", None),
        "stride": pair(list(param.stride), "stride_h", "stride_w", 1),
        "pad": pair(list(param.pad), "pad_h", "pad_w", 0),
        "dilation": _dilation(param, ctx),
    }
    for name in ("kernel", "stride", "dilation"):
        if min(params[name]) < 1:
            raise ctx.error(f"{name} {params[name]} must be positive (set both _h and _w)")
    return params


def _dilation(param: caffe_pb2.ConvolutionParameter, ctx: ConversionContext) -> list[int]:
    values = [int(v) for v in param.dilation] or [1]
    if len(values) == 1:
        return values * 2
    if len(values) == 2:
        return values
    raise ctx.error(f"only 2-D convolution is supported (got {len(values)} dilation values)")


def _convert(layer: caffe_pb2.LayerParameter, ctx: ConversionContext, transposed: bool) -> None:
    """Conv and ConvTranspose share everything but the weight layout and the ONNX op."""
    param = layer.convolution_param
    if param.axis != 1:
        raise ctx.error("only axis 1 (NCHW) convolution is supported")
    source = ctx.bottom()
    if len(ctx.shape(source)) != 4:
        raise ctx.error(f"needs a 4-D (N, C, H, W) input, got {list(ctx.shape(source))}")
    channels = ctx.static_dims(source)[0]
    p = spatial_params(param, ctx)
    group = int(param.group)
    if group < 1 or channels % group or param.num_output % group:
        raise ctx.error(f"group {group} does not divide {channels} input channels and {param.num_output} outputs")
    blobs = ctx.blobs(2 if param.bias_term else 1)
    if transposed:
        weight_shape = [channels, param.num_output // group, *p["kernel"]]
    else:
        weight_shape = [param.num_output, channels // group, *p["kernel"]]
    inputs = [source, ctx.const(ctx.reshape_blob(blobs[0], weight_shape, "weight"), "weight")]
    if param.bias_term:
        inputs.append(ctx.const(ctx.reshape_blob(blobs[1], [param.num_output], "bias"), "bias"))
    ctx.node(
        "ConvTranspose" if transposed else "Conv",
        inputs,
        [ctx.top()],
        kernel_shape=p["kernel"],
        strides=p["stride"],
        pads=p["pad"] * 2,
        dilations=p["dilation"],
        group=group,
    )


@register("Convolution", needs_weights=True)
def convert_convolution(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """Conv with Caffe's floor output size; weights [out, in/group, kh, kw]."""
    _convert(layer, ctx, transposed=False)


@register("Deconvolution", needs_weights=True)
def convert_deconvolution(layer: caffe_pb2.LayerParameter, ctx: ConversionContext) -> None:
    """ConvTranspose, out = s(in - 1) + d(k - 1) + 1 - 2p; weights [in, out/group, kh, kw]."""
    _convert(layer, ctx, transposed=True)
