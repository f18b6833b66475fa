"""Write small Caffe nets with seeded random weights, and check our ONNX against OpenCV's Caffe.

Why: the converter's promise is "the ONNX computes what Caffe computed". Caffe itself is
not installable any more, so the independent reference is OpenCV 4's Caffe importer
(``cv2.dnn.readNetFromCaffe``), fed the very same prototxt + caffemodel files we convert.
The files are produced with our own protobuf schema (``decoder.caffe_proto``), exactly as
Caffe writes them: the prototxt as protobuf text, the caffemodel as a binary NetParameter
whose layers carry the blobs.

Usage::

    net = NetBuilder("relu", seed=0)
    x = net.input("data", (1, 3, 7, 9))
    y = net.layer("Convolution", x, convolution_param={"num_output": 4, "kernel_size": [3]},
                  blobs=[(4, 3, 3, 3), (4,)])
    assert_matches_opencv(net, tmp_path)        # batch 1 and batch 3, 1e-5 relative
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from google.protobuf import json_format, text_format

from decoder.caffe_io import load_net
from decoder.caffe_proto import caffe_pb2
from decoder.converter import convert_net
from decoder.runtime import run_fixed_batch

#: Tolerance of every comparison: max |ours - ref| <= RTOL * max |ref| + ATOL.
RTOL = 1e-5
#: Absolute floor, so that outputs that are all (nearly) zero compare sanely.
ATOL = 1e-6

BlobSpec = np.ndarray | Sequence[int]


def random_blob(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    """Weights of a plausible magnitude: N(0, 1/fan_in), so activations stay O(1) in deep nets."""
    shape = tuple(int(s) for s in shape)
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return (rng.standard_normal(shape) / np.sqrt(max(fan_in, 1))).astype(np.float32)


@dataclass
class NetFiles:
    """A written net: the deploy prototxt and the caffemodel."""

    prototxt: Path
    caffemodel: Path


class NetBuilder:
    """Builds a deploy prototxt and the matching caffemodel, layer by layer.

    Parameters are given as dicts in protobuf-JSON form (enums by name, repeated fields as
    lists), e.g. ``pooling_param={"pool": "AVE", "kernel_size": 3}``. Blobs are arrays or
    shapes (filled with seeded random values); they go to the caffemodel only, like Caffe's.
    """

    def __init__(self, name: str = "test_net", seed: int = 0) -> None:
        self.proto = caffe_pb2.NetParameter(name=name)
        self.model = caffe_pb2.NetParameter(name=name)
        self.rng = np.random.default_rng(seed)
        self.inputs: dict[str, tuple[int, ...]] = {}
        #: The blobs written for each layer (as float32 arrays), for numpy references.
        self.blobs: dict[str, list[np.ndarray]] = {}
        self._count = 0

    # ---- building --------------------------------------------------------------
    def input(self, name: str, shape: Sequence[int], *, style: str = "input_shape") -> str:
        """Declare an input blob: legacy ``input`` + ``input_shape``/``input_dim`` or an Input layer."""
        shape = tuple(int(s) for s in shape)
        self.inputs[name] = shape
        if style == "input_shape":
            self.proto.input.append(name)
            self.proto.input_shape.add().dim.extend(shape)
        elif style == "input_dim":
            self.proto.input.append(name)
            self.proto.input_dim.extend(shape)
        elif style == "layer":
            layer = self.proto.layer.add(name=f"input_{name}", type="Input", top=[name])
            layer.input_param.shape.add().dim.extend(shape)
        else:
            raise ValueError(f"unknown input style {style!r}")
        return name

    def layer(
        self,
        type: str,
        bottoms: str | Sequence[str],
        tops: str | Sequence[str] | None = None,
        *,
        name: str | None = None,
        blobs: Sequence[BlobSpec] = (),
        legacy_blobs: bool = False,
        **params: Mapping[str, Any],
    ) -> str | list[str]:
        """Add a layer; returns its top name (or the list of tops when there are several)."""
        self._count += 1
        name = name or f"{type.lower()}{self._count}"
        bottoms = [bottoms] if isinstance(bottoms, str) else list(bottoms)
        if tops is None:
            tops = [name]
        tops = [tops] if isinstance(tops, str) else list(tops)
        layer = self.proto.layer.add(name=name, type=type, bottom=bottoms, top=tops)
        for field_name, values in params.items():
            json_format.ParseDict(dict(values), getattr(layer, field_name))
        if blobs:
            trained = self.model.layer.add()
            trained.CopyFrom(layer)
            for spec in blobs:
                array = spec if isinstance(spec, np.ndarray) else random_blob(self.rng, spec)
                self.blobs.setdefault(name, []).append(np.asarray(array, dtype=np.float32))
                trained.blobs.append(array_to_blob(array, legacy=legacy_blobs))
        return tops[0] if len(tops) == 1 else tops

    # ---- writing -------------------------------------------------------------------
    def prototxt(self) -> str:
        return text_format.MessageToString(self.proto)

    def write(self, directory: Path, stem: str | None = None) -> NetFiles:
        """Write ``<stem>.prototxt`` and ``<stem>.caffemodel`` into ``directory``."""
        stem = stem or self.proto.name
        directory.mkdir(parents=True, exist_ok=True)
        files = NetFiles(directory / f"{stem}.prototxt", directory / f"{stem}.caffemodel")
        files.prototxt.write_text(self.prototxt())
        model = caffe_pb2.NetParameter()
        model.CopyFrom(self.model)
        if not model.layer:
            # A caffemodel with no trained layer at all: Caffe still writes every layer.
            model.layer.extend(self.proto.layer)
        files.caffemodel.write_bytes(model.SerializeToString())
        return files

    def random_inputs(self, batch: int, seed: int = 1, low: float = -2.0, high: float = 2.0) -> dict[str, np.ndarray]:
        """Seeded uniform inputs of the declared shapes, with the batch replaced."""
        rng = np.random.default_rng(seed)
        return {
            name: rng.uniform(low, high, (batch, *shape[1:])).astype(np.float32) for name, shape in self.inputs.items()
        }


def array_to_blob(array: np.ndarray, legacy: bool = False) -> caffe_pb2.BlobProto:
    """A BlobProto with ``shape`` (or, for V1-era files, num/channels/height/width)."""
    array = np.asarray(array, dtype=np.float32)
    blob = caffe_pb2.BlobProto()
    if legacy:
        dims = (1,) * (4 - array.ndim) + array.shape
        if len(dims) != 4:
            raise ValueError("legacy blobs have at most 4 dimensions")
        blob.num, blob.channels, blob.height, blob.width = dims
    else:
        blob.shape.dim.extend(array.shape)
    blob.data.extend(array.ravel().tolist())
    return blob


# ---- running ---------------------------------------------------------------------------
def run_onnx(model_bytes: bytes, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All graph outputs of an ONNX model, by name, on the CPU provider."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(inputs)), strict=True))


def convert_files(files: NetFiles, **kwargs: Any) -> tuple[bytes, list[str]]:
    """Convert with our converter; returns the serialized model and its output names."""
    graph = convert_net(load_net(files.prototxt, files.caffemodel), **kwargs)
    return graph.model.SerializeToString(), list(graph.outputs)


def per_call(
    forward: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]],
    feed: Mapping[str, np.ndarray],
    outputs: Sequence[str],
    fixed_batch: int | None,
) -> dict[str, np.ndarray]:
    """``forward`` on the whole feed, or, for a fixed-batch graph, ``fixed_batch`` images per call
    stacked by the runtime's own rule: the per-image answer, never Caffe's merged one."""
    if fixed_batch is None:
        return dict(forward(feed))

    def call(chunk: dict[str, np.ndarray]) -> list[np.ndarray]:
        values = forward(chunk)
        return [np.asarray(values[name]) for name in outputs]

    return dict(zip(outputs, run_fixed_batch(call, dict(feed), fixed_batch), strict=True))


def opencv_output_pins(files: NetFiles, outputs: Sequence[str]) -> list[tuple[str, int]]:
    """OpenCV addresses outputs by LAYER name: (last layer writing each blob, index of the top)."""
    net = caffe_pb2.NetParameter()
    text_format.Parse(files.prototxt.read_text(), net)
    if net.layers:
        layers = [(lay.name or lay.layer.name, list(lay.top)) for lay in net.layers]
    else:
        layers = [(lay.name, list(lay.top)) for lay in net.layer]
    writers: dict[str, tuple[str, int]] = {}
    for layer_name, tops in layers:
        for index, top in enumerate(tops):
            writers[top] = (layer_name, index)
    return [writers[o] for o in outputs]


def run_opencv(files: NetFiles, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
    """OpenCV's forward pass of the same files (no fusion, no Winograd: the literal computation)."""
    import cv2

    net = cv2.dnn.readNetFromCaffe(str(files.prototxt), str(files.caffemodel))
    net.enableFusion(False)
    if hasattr(net, "enableWinograd"):
        net.enableWinograd(False)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    for name, value in inputs.items():
        net.setInput(np.ascontiguousarray(value), name)
    pins = opencv_output_pins(files, outputs)
    layers = list(dict.fromkeys(layer for layer, _ in pins))
    results = dict(zip(layers, net.forwardAndRetrieve(layers), strict=True))
    return {
        o: np.asarray(results[layer][index], dtype=np.float32) for o, (layer, index) in zip(outputs, pins, strict=True)
    }


def max_error(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(largest absolute difference, largest |ref|)."""
    return float(np.max(np.abs(ours.astype(np.float64) - ref))), float(np.max(np.abs(ref)))


def assert_close(ours: np.ndarray, ref: np.ndarray, what: str, rtol: float = RTOL, atol: float = ATOL) -> None:
    """Shape equal and max |ours - ref| <= rtol * max |ref| + atol (NaN must match NaN)."""
    ref = np.asarray(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != reference {ref.shape}"
    assert np.array_equal(np.isnan(ours), np.isnan(ref)), f"{what}: NaNs differ"
    finite = ~np.isnan(ref)
    if not finite.any():
        return
    err, scale = max_error(ours[finite], ref[finite])
    assert err <= rtol * scale + atol, f"{what}: max error {err:.3g} > {rtol:g} x max|ref| {scale:.3g} + {atol:g}"


def assert_matches_opencv(
    net: NetBuilder | NetFiles,
    directory: Path,
    batches: Sequence[int] = (1, 3),
    inputs: Sequence[Mapping[str, np.ndarray]] | None = None,
    rtol: float = RTOL,
    atol: float = ATOL,
    **convert_kwargs: Any,
) -> dict[str, np.ndarray]:
    """Convert once (dynamic batch), then compare every output to OpenCV at each batch size.

    A net converted with a fixed batch (a layer mixes images) runs, on both sides, that many
    images per call: the per-image answer is the right one, not Caffe's merged one.

    Returns our outputs at the last batch, for tests that check more.
    """
    files = net.write(directory) if isinstance(net, NetBuilder) else net
    graph = convert_net(load_net(files.prototxt, files.caffemodel), **convert_kwargs)
    model, outputs, fixed = graph.model.SerializeToString(), list(graph.outputs), graph.fixed_batch
    feeds: list[Mapping[str, np.ndarray]]
    if inputs is not None:
        feeds = list(inputs)
    else:
        assert isinstance(net, NetBuilder)
        feeds = [net.random_inputs(b, seed=10 + b) for b in batches]
    ours: dict[str, np.ndarray] = {}
    for feed in feeds:
        ours = per_call(lambda f: run_onnx(model, f), feed, outputs, fixed)
        ref = per_call(lambda f: run_opencv(files, f, outputs), feed, outputs, fixed)
        batch = next(iter(feed.values())).shape[0]
        for name in outputs:
            assert_close(ours[name], ref[name], f"{files.prototxt.name} output {name!r} at batch {batch}", rtol, atol)
    return ours


def assert_matches_reference(
    net: NetBuilder,
    directory: Path,
    reference: Any,
    batches: Sequence[int] = (1, 3),
    rtol: float = RTOL,
    atol: float = ATOL,
    **convert_kwargs: Any,
) -> dict[str, np.ndarray]:
    """Like :func:`assert_matches_opencv`, against ``reference(inputs) -> {output: array}``.

    For the cases where OpenCV departs from Caffe (or cannot read the layer): the reference
    is then a numpy re-implementation of the upstream Caffe source, cited by the test.
    """
    files = net.write(directory)
    graph = convert_net(load_net(files.prototxt, files.caffemodel), **convert_kwargs)
    model, outputs, fixed = graph.model.SerializeToString(), list(graph.outputs), graph.fixed_batch
    ours: dict[str, np.ndarray] = {}
    for batch in batches:
        feed = net.random_inputs(batch, seed=10 + batch)
        ours = per_call(lambda f: run_onnx(model, f), feed, outputs, fixed)
        ref = per_call(reference, feed, outputs, fixed)
        for name in outputs:
            assert_close(ours[name], ref[name], f"{files.prototxt.name} output {name!r} at batch {batch}", rtol, atol)
    return ours
