"""``missing-weights``: deploy layers whose names have no blobs in the caffemodel.

Caffe copies trained weights into the deploy net BY LAYER NAME and silently keeps the
random initial weights of a layer it finds no match for; a renamed layer therefore gives
confident nonsense. ``decode convert`` refuses such a net, so this check reads the Caffe
files directly, before any conversion, and names the unused trained layer that was most
likely the renamed one.
"""

from __future__ import annotations

from collections.abc import Sequence

from decoder.caffe_io import load_net, read_caffemodel, upgraded_layers
from decoder.diagnosis.findings import Finding
from decoder.layers import get_converter
from decoder.sources import ModelSources

#: Layer types that cannot work without trained blobs, for types we do not convert.
WEIGHTED_TYPES = frozenset({"Convolution", "Deconvolution", "InnerProduct", "BatchNorm", "PReLU", "Embed", "Bias"})


def needs_weights(layer: object) -> bool:
    kind = getattr(layer, "type", "")
    converter = get_converter(kind)
    if converter is not None:
        return converter.needs_weights
    if kind == "Scale":
        return len(getattr(layer, "bottom", ())) < 2  # a second bottom carries the scale instead
    return kind in WEIGHTED_TYPES


def check_weights(sources: ModelSources, input_shape: tuple[int, int, int] | None = None) -> list[Finding]:
    """One finding per deploy layer without trained blobs, with the likely original name.

    ``input_shape``: the net's C, H, W where its prototxt does not say (`--input-shape`).
    """
    net = load_net(sources.prototxt, sources.caffemodel, input_shape=input_shape)
    trained = {layer.name: layer for layer in upgraded_layers(read_caffemodel(sources.caffemodel)) if layer.blobs}
    used = {layer.name for layer in net.layers}
    unused = [layer for name, layer in trained.items() if name not in used]
    findings = []
    for layer in net.layers:
        if not needs_weights(layer) or net.weights.get(layer.name):
            continue
        candidates = _candidates(layer, unused)
        hint = ""
        if len(candidates) == 1:
            hint = f"; the caffemodel has unused weights of the same type and size under {candidates[0]!r}"
        elif candidates:
            hint = "; unused trained layers of the same type: " + ", ".join(repr(c) for c in candidates[:5])
        message = (
            f"deploy layer {layer.name!r} ({layer.type}) has no weights in {sources.caffemodel.name}: Caffe would run "
            f"it with random initial weights{hint}"
        )
        if len(candidates) == 1:
            fix = f"rename layer {layer.name!r} back to {candidates[0]!r} in {sources.prototxt.name}"
        else:
            fix = f"give layer {layer.name!r} the name it had when the caffemodel was trained"
        evidence = {"layer": layer.name, "type": layer.type, "candidates": candidates}
        findings.append(Finding("missing-weights", "error", message, fix, evidence))
    return findings


def _candidates(layer: object, unused: Sequence[object]) -> list[str]:
    """Unused trained layers of the same type whose output count matches the deploy layer's."""
    kind = getattr(layer, "type", "")
    outputs = _num_output(layer)
    names = []
    for other in unused:
        if getattr(other, "type", "") != kind:
            continue
        blobs = getattr(other, "blobs", [])
        first = blobs[0] if blobs else None
        count = _leading_dim(first, kind) if first is not None else None
        if outputs is None or count is None or count == outputs:
            names.append(str(getattr(other, "name", "")))
    return names


def _num_output(layer: object) -> int | None:
    for field in ("convolution_param", "inner_product_param"):
        param = getattr(layer, field, None)
        if param is not None and layer.HasField(field):  # type: ignore[attr-defined]
            return int(param.num_output)
    return None


def _leading_dim(blob: object, kind: str) -> int | None:
    """The output count a weight blob stands for (legacy InnerProduct blobs are 1 x 1 x N x K)."""
    shape = getattr(blob, "shape", None)
    dims = [int(d) for d in shape.dim] if shape is not None and len(shape.dim) else []
    if not dims:
        dims = [int(getattr(blob, k, 0)) for k in ("num", "channels", "height", "width")]
        if not any(dims):
            return None
    if kind == "InnerProduct" and len(dims) == 4 and dims[0] == dims[1] == 1:
        return dims[2]
    return dims[0]
