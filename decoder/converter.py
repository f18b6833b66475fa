"""Caffe net -> ONNX graph, through the per-layer registry in :mod:`decoder.layers`.

The driver first checks the whole net (every unsupported layer type, every deploy layer
that needs weights and has none) and reports all problems at once, then converts layer by
layer. The graph's inputs are the Caffe input blobs (NCHW float32, dynamic batch ``N``);
its outputs are the net's output blobs under their Caffe names, in prototxt order.

Never merge images: a layer that mixes the images of a batch (a Reshape that writes the
batch as a literal, a Concat or Softmax over the batch axis, BatchNorm with batch
statistics...) makes the converter start again with the batch the prototxt declares, so
that each call computes what Caffe computed for that many images; the runtime then feeds
that many images per call (:attr:`ConvertedGraph.fixed_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper

import decoder.layers  # noqa: F401  (registers every converter)
from decoder.caffe_io import CaffeNet
from decoder.errors import DecoderError, UnsupportedLayersError
from decoder.layers.context import BatchCoupled, ConversionContext
from decoder.layers.registry import get_converter

#: Opset 17: every op we emit has its current semantics there (Softmax on one axis since
#: 13), and ONNX Runtime >= 1.12, OpenCV >= 4.7 and TensorRT >= 8.5 all load it.
DEFAULT_OPSET = 17
MIN_OPSET = 13

#: Layers that only exist for training; a deploy prototxt may still carry them.
TRAINING_ONLY_TYPES = frozenset(
    {
        "Data",
        "ImageData",
        "HDF5Data",
        "HDF5Output",
        "MemoryData",
        "WindowData",
        "DummyData",
        "Accuracy",
        "SoftmaxWithLoss",
        "EuclideanLoss",
        "HingeLoss",
        "InfogainLoss",
        "MultinomialLogisticLoss",
        "SigmoidCrossEntropyLoss",
        "ContrastiveLoss",
    }
)


@dataclass
class ConvertedGraph:
    """The ONNX model and where each Caffe layer's tops live in it."""

    model: onnx.ModelProto
    outputs: list[str]
    layer_tops: dict[str, list[str]] = field(default_factory=dict)
    layer_nodes: dict[str, list[str]] = field(default_factory=dict)
    layer_types: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    #: With ``detach_weights``: the data of initializers that ``model`` holds only by name,
    #: type and dims (write with :func:`decoder.onnx_writer.write_onnx`).
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    #: ONNX names of each layer's bottoms, as they were when the layer read them.
    layer_bottoms: dict[str, list[str]] = field(default_factory=dict)
    #: Shape of every ONNX value ("N" for the dynamic batch).
    shapes: dict[str, tuple[int | str, ...]] = field(default_factory=dict)
    #: The batch every call must have (Caffe's declared batch), when a layer mixes images; else None.
    fixed_batch: int | None = None
    #: Why the batch is fixed (one entry per layer that mixes images).
    batch_couplings: list[str] = field(default_factory=list)
    #: How literal batch sizes in Reshape layers were read (kept dynamic, and why).
    batch_notes: list[str] = field(default_factory=list)


def check_convertible(net: CaffeNet) -> list[str]:
    """Raise for every unsupported layer or missing weights at once; return skipped layer names."""
    unsupported: list[tuple[str, str]] = []
    missing: list[str] = []
    skipped: list[str] = []
    for layer in net.layers:
        if layer.type in TRAINING_ONLY_TYPES:
            skipped.append(layer.name)
            continue
        converter = get_converter(layer.type)
        if converter is None:
            unsupported.append((layer.name, layer.type or "<no type>"))
        elif converter.needs_weights and not net.weights.get(layer.name):
            missing.append(layer.name)
    if unsupported:
        raise UnsupportedLayersError(unsupported, net.prototxt or None)
    if missing and net.caffemodel:
        names = ", ".join(repr(m) for m in missing)
        raise DecoderError(
            f"no weights for layer(s) {names} of {net.prototxt}: the deploy layer names must match the "
            "trained layers (Caffe silently keeps random weights for a renamed layer)",
            net.caffemodel,
        )
    return skipped


def net_outputs(net: CaffeNet, skipped: set[str]) -> list[str]:
    """Blobs written and never read afterwards, ordered by their final write (prototxt order)."""
    available: dict[str, int] = {}
    order = 0
    for layer in net.layers:
        if layer.name in skipped:
            continue
        for bottom in layer.bottom:
            available.pop(bottom, None)
        for top in layer.top:
            available.pop(top, None)
            available[top] = order
            order += 1
    return sorted(available, key=available.__getitem__)


def convert_net(
    net: CaffeNet,
    opset: int = DEFAULT_OPSET,
    batch: int | None = None,
    caffe_flavor: str | None = None,
    placeholder_weights: bool = False,
    detach_weights: bool = False,
) -> ConvertedGraph:
    """Convert a loaded Caffe net to a checked ONNX model (dynamic batch unless ``batch``).

    ``detach_weights`` leaves the big weights out of the model (``ConvertedGraph.weights``,
    often views of the caffemodel's bytes) so that writing it copies them only to the file.

    ``caffe_flavor`` is info.json's "caffe flavor" (BVLC or NVIDIA): BatchNorm's blob
    layout differs between them. When a layer mixes the images of a batch, the graph is
    built again with the prototxt's declared batch and :attr:`ConvertedGraph.fixed_batch` says so.
    """
    if opset < MIN_OPSET:
        raise DecoderError(f"opset {opset} is too old: Caffe's Softmax needs opset >= {MIN_OPSET}")
    skipped = check_convertible(net)
    if batch is not None:
        return _convert(net, opset, batch, caffe_flavor, placeholder_weights, detach_weights, skipped)
    try:
        return _convert(net, opset, None, caffe_flavor, placeholder_weights, detach_weights, skipped)
    except BatchCoupled as exc:
        first_reason = str(exc)
    declared = {int(i.shape[0]) for i in net.inputs if i.shape}
    if len(declared) != 1 or min(declared) < 1:
        raise DecoderError(
            f"a layer mixes the images of a batch, and the inputs declare batches {sorted(declared)}, "
            "not one batch to keep",
            net.prototxt or None,
        )
    graph = _convert(net, opset, declared.pop(), caffe_flavor, placeholder_weights, detach_weights, skipped)
    graph.fixed_batch = graph.shapes[net.inputs[0].name][0]  # type: ignore[assignment]
    if first_reason not in graph.batch_couplings:  # found by the shape check, which a fixed batch skips
        graph.batch_couplings.insert(0, first_reason)
    _check_rows_per_image(graph, net)
    return graph


def _check_rows_per_image(graph: ConvertedGraph, net: CaffeNet) -> None:
    """With a fixed batch above 1, every output must still have one row per image to split them."""
    batch = graph.fixed_batch
    if batch is None or batch == 1:
        return  # one image per call: each call's outputs are that image's
    for output in graph.outputs:
        shape = graph.shapes[output]
        if not shape or shape[0] != batch:
            raise DecoderError(
                f"{graph.batch_couplings[0]}, so the net must run {batch} images per call, but its output "
                f"{output!r} ({list(shape)}) has no row per image to tell them apart; declare a batch of 1 in "
                "the prototxt to run one image per call",
                net.prototxt or None,
            )


def _convert(
    net: CaffeNet,
    opset: int,
    batch: int | None,
    caffe_flavor: str | None,
    placeholder_weights: bool,
    detach_weights: bool,
    skipped: list[str],
) -> ConvertedGraph:
    skipped_set = set(skipped)
    ctx = ConversionContext(net, opset, batch, placeholder_weights)
    ctx.caffe_flavor = caffe_flavor
    layer_types: dict[str, str] = {}
    layer_bottoms: dict[str, list[str]] = {}
    for index, layer in enumerate(net.layers):
        if layer.name in skipped_set:
            continue
        converter = get_converter(layer.type)
        assert converter is not None  # checked above
        layer_bottoms[layer.name] = [ctx.current.get(b, b) for b in layer.bottom]
        ctx.begin_layer(index, layer)
        try:
            converter.convert(layer, ctx)
            ctx.end_layer()
        except DecoderError as exc:
            raise DecoderError(exc.message, net.prototxt or None) from None
        layer_types[layer.name] = layer.type
    outputs = net_outputs(net, skipped_set)
    if not outputs:
        raise DecoderError("the net has no output blob", net.prototxt or None)
    graph_inputs = [
        helper.make_tensor_value_info(i.name, TensorProto.FLOAT, list(ctx.shape(i.name))) for i in net.inputs
    ]
    graph_outputs = [
        helper.make_tensor_value_info(ctx.current[o], TensorProto.FLOAT, list(ctx.shape(ctx.current[o])))
        for o in outputs
    ]
    graph = helper.make_graph(ctx.nodes, net.name or "caffe_net", graph_inputs, graph_outputs, ctx.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="decoder",
        producer_version=_version(),
    )
    model.ir_version = min(model.ir_version, _max_ir_version(opset))
    _check(model, ctx.detached)
    if not detach_weights:
        attach_weights(model, ctx.detached)
    return ConvertedGraph(
        model,
        [ctx.current[o] for o in outputs],
        dict(ctx.layer_tops),
        dict(ctx.layer_nodes),
        layer_types,
        skipped,
        ctx.detached if detach_weights else {},
        layer_bottoms,
        dict(ctx.shapes),
        None,
        list(ctx.batch_couplings),
        list(ctx.batch_notes),
    )


def _check(model: onnx.ModelProto, detached: dict[str, np.ndarray]) -> None:
    """onnx.checker on the graph with the big weights as typed graph inputs instead of data.

    The checker serializes the whole model and parses it again in C++: with VGG-16's
    weights inside that is two more copies of 528 MB. Without them it checks the same
    nodes, types and shapes.
    """
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)  # detached initializers carry no data: this copy is small
    if detached:
        kept = [t for t in skeleton.graph.initializer if t.name not in detached]
        del skeleton.graph.initializer[:]
        skeleton.graph.initializer.extend(kept)
        skeleton.graph.input.extend(
            helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(array.dtype), array.shape)
            for name, array in detached.items()
        )
    try:
        onnx.checker.check_model(skeleton, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise DecoderError(f"internal error: the converted graph fails onnx.checker ({exc})") from None


def attach_weights(model: onnx.ModelProto, detached: dict[str, np.ndarray]) -> None:
    """Put detached weights into their (data-less) initializers, making ``model`` self-contained."""
    for tensor in model.graph.initializer:
        array = detached.get(tensor.name)
        if array is not None:
            tensor.raw_data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def _version() -> str:
    from decoder import __version__

    return __version__


def _max_ir_version(opset: int) -> int:
    """The oldest IR version that carries ``opset``, so older runtimes can load the file."""
    return int(helper.find_min_ir_version_for([helper.make_opsetid("", opset)]))
