"""The numbers behind `decode visualize`: filters, activations and per-layer statistics.

Only numpy, onnx and ONNX Runtime here, no plotting: users who want their own pictures
(or none) get the arrays and the statistics as dataclasses, and the drawing code in
:mod:`decoder.visualization.figures` consumes exactly what is returned here.

Where things come from:

- filters: the initializers of each Caffe Convolution layer's ONNX ``Conv`` node (node
  names start with the Caffe layer name + ``/Conv``, see ``decoder.layers.context``), in
  Caffe's layout ``[out, in/group, kh, kw]``;
- activations: :class:`decoder.intermediates.LayerRunner`, every Caffe layer's tops from
  one ONNX Runtime call, under the names recorded at conversion (``decoder.graph``);
- the input: :func:`decoder.preprocess.preprocess_batch` with the spec stored in the .onnx,
  i.e. exactly the blob the network sees (de-meaned, scaled, BGR for colour models).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from decoder.decoding import Prediction, decode, to_probabilities
from decoder.errors import DecoderError
from decoder.spec import SPEC_KEY, PreprocessSpec, read_graph_metadata

#: Bins of every histogram (numpy's edges over the finite values of the blob).
HISTOGRAM_BINS = 50

#: Inputs a unit must be zero for before it is called "dead": from one image (or a handful) a
#: zero channel says only that this input did not excite it.
DEAD_MIN_INPUTS = 8

#: Caffe layer types that own trained blobs; every other type has no parameters, even when
#: its ONNX form needs constants (a Power layer's factor, a pooling divisor).
PARAMETER_LAYER_TYPES = frozenset(
    {"Convolution", "Deconvolution", "InnerProduct", "BatchNorm", "Scale", "Bias", "PReLU", "Embed"}
)

#: ONNX ops through which a value is still "the image" (DIGITS's LeNet scales it first).
_PASS_THROUGH_OPS = frozenset({"Mul", "Add", "Sub", "Div", "Identity"})


@dataclass(frozen=True)
class FilterBank:
    """The trained kernels of one Convolution layer.

    ``weights`` is float32 ``[out, in/group, kh, kw]`` with the input channels in the order
    the layer receives them. ``input_order`` is ``"BGR"`` or ``"RGB"`` when the layer reads
    the 3-channel image directly (possibly through a scaling op), else ``None``.
    """

    layer: str
    weights: np.ndarray
    bias: np.ndarray | None
    group: int
    input_order: str | None = None

    @property
    def count(self) -> int:
        """Number of filters (output channels)."""
        return int(self.weights.shape[0])

    @property
    def in_colour(self) -> bool:
        """True when each filter is best seen as one colour picture (it reads the RGB/BGR image)."""
        return self.input_order is not None and self.weights.shape[1] == 3

    def rgb(self) -> np.ndarray:
        """``(out, kh, kw, 3)`` weights in R, G, B order (a BGR net's channels flipped for display)."""
        if not self.in_colour:
            raise DecoderError(f"layer {self.layer!r}: filters do not read a 3-channel image, no colour view")
        hwc = self.weights.transpose(0, 2, 3, 1)
        return hwc[..., ::-1] if self.input_order == "BGR" else hwc

    @property
    def scale(self) -> float:
        """The largest absolute weight: pictures map -scale .. +scale onto the colour range."""
        finite = self.weights[np.isfinite(self.weights)]
        return float(np.abs(finite).max()) if finite.size else 0.0


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one blob (one top of one Caffe layer, or the input) for one forward pass.

    ``mean``/``std``/``min``/``max`` are over the finite values, in float64; ``std`` is the
    population standard deviation (numpy's default). A unit is one channel (axis 1);
    ``dead_units`` lists those whose every value is exactly zero over the ``inputs`` images.
    Only over :data:`DEAD_MIN_INPUTS` or more inputs is that called "dead"; from one image
    the flag says "zero for this input".
    """

    layer: str
    type: str
    top: str
    shape: tuple[int, ...]
    parameters: int
    mean: float
    std: float
    min: float
    max: float
    zero_fraction: float
    nan_count: int
    inf_count: int
    units: int
    dead_units: tuple[int, ...]
    histogram_counts: tuple[int, ...] = field(repr=False)
    histogram_edges: tuple[float, ...] = field(repr=False)

    @property
    def inputs(self) -> int:
        """How many images the statistics cover (the batch axis)."""
        return int(self.shape[0]) if self.shape else 0

    @property
    def flags(self) -> tuple[str, ...]:
        """Short warnings for the index page: all-zero units (dead only over several inputs), NaN, Inf."""
        flags = []
        if self.dead_units:
            zero = f"{len(self.dead_units)} of {self.units} units"
            if self.inputs >= DEAD_MIN_INPUTS:
                flags.append(f"{zero} dead (zero for all {self.inputs} inputs)")
            elif self.inputs > 1:
                flags.append(f"{zero} zero for all {self.inputs} inputs (too few to call them dead)")
            else:
                flags.append(f"{zero} zero for this input")
        if self.nan_count:
            flags.append(f"{self.nan_count} NaN")
        if self.inf_count:
            flags.append(f"{self.inf_count} Inf")
        return tuple(flags)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: non-finite numbers become ``null`` (JSON has no NaN)."""
        return {
            "layer": self.layer,
            "type": self.type,
            "top": self.top,
            "shape": list(self.shape),
            "parameters": self.parameters,
            "mean": _finite_or_none(self.mean),
            "std": _finite_or_none(self.std),
            "min": _finite_or_none(self.min),
            "max": _finite_or_none(self.max),
            "zero_fraction": self.zero_fraction,
            "nan_count": self.nan_count,
            "inf_count": self.inf_count,
            "inputs": self.inputs,
            "units": self.units,
            "dead_units": list(self.dead_units),
            "flags": list(self.flags),
            "histogram": {"counts": list(self.histogram_counts), "edges": list(self.histogram_edges)},
        }


@dataclass(frozen=True)
class Blob:
    """One blob of the forward pass: which layer wrote it and its values (batch first)."""

    layer: str
    type: str
    top: str
    values: np.ndarray


@dataclass(frozen=True)
class Forward:
    """Images through the network: the input blob and every layer's tops, in network order.

    ``image`` names the first image (the one the pictures show); ``images`` all of them.
    """

    image: str
    input: Blob
    blobs: tuple[Blob, ...]
    prediction: Prediction | None
    images: tuple[str, ...] = ()


def blob_statistics(
    values: np.ndarray, layer: str, type: str, top: str, parameters: int = 0, bins: int = HISTOGRAM_BINS
) -> LayerStats:
    """Statistics of ``values`` (batch first); see :class:`LayerStats` for the definitions."""
    array = np.asarray(values)
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    # One pass per figure, no float64 copy of the blob: deep nets have hundreds of large blobs.
    all_finite = bool(np.isfinite(array).all())
    finite = array.reshape(-1) if all_finite else array[np.isfinite(array)]
    nan_count = 0 if all_finite else int(np.isnan(array).sum())
    inf_count = 0 if all_finite else int(np.isinf(array).sum())
    if finite.size:
        mean, std = float(finite.mean(dtype=np.float64)), float(finite.std(dtype=np.float64))
        low, high = float(finite.min()), float(finite.max())
        counts, edges = np.histogram(finite, bins=bins)
    else:
        mean = std = low = high = float("nan")
        counts, edges = np.zeros(0, np.int64), np.zeros(0)
    zero_fraction = float((array.size - np.count_nonzero(array)) / array.size) if array.size else 0.0
    if array.ndim >= 2:
        # A unit is dead when every value it produced is exactly 0 (NaN counts as nonzero).
        others = tuple(axis for axis in range(array.ndim) if axis != 1)
        dead = tuple(int(i) for i in np.flatnonzero(~np.any(array, axis=others)))
        units = int(array.shape[1])
    else:
        dead, units = (), 0
    return LayerStats(
        layer=layer,
        type=type,
        top=top,
        shape=tuple(int(d) for d in array.shape),
        parameters=int(parameters),
        mean=mean,
        std=std,
        min=low,
        max=high,
        zero_fraction=zero_fraction,
        nan_count=nan_count,
        inf_count=inf_count,
        units=units,
        dead_units=dead,
        histogram_counts=tuple(int(c) for c in counts),
        histogram_edges=tuple(float(e) for e in edges),
    )


class Visualizer:
    """A converted model opened for inspection: its filters, and forward passes that keep every layer.

    Only models written by ``decode convert`` qualify: the layer map (``decoder.graph``)
    is what ties ONNX values back to Caffe layer names. The preprocessing spec is needed
    for :meth:`forward` only, so filters of a non-image net can still be read.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:

        from decoder.intermediates import LayerRunner, load_onnx

        p = Path(path)
        model = load_onnx(p)
        self.path = str(p)
        self.props = {prop.key: prop.value for prop in model.metadata_props}
        graph = read_graph_metadata(self.props, str(p))
        self.spec: PreprocessSpec | None = (
            PreprocessSpec.from_metadata(self.props, self.path) if SPEC_KEY in self.props else None
        )
        self.runner = LayerRunner(p, model)
        self.layers = list(self.runner.layers)
        self.input_name = self.runner.input_name
        layer_names = [layer.name for layer in self.layers]
        constants = _constants(model)
        self.parameters = _parameter_counts(model, self.layers, constants)
        self.filters: list[FilterBank] = _filter_banks(model, layer_names, self.layers, self.spec, p, constants)
        self.score_output: str = graph.get("score_output", "")
        self.score_is_softmax = bool(graph.get("score_is_softmax", False))

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels if self.spec else ()

    def forward(
        self,
        image: str | os.PathLike[str] | np.ndarray | Sequence[str | os.PathLike[str] | np.ndarray],
        name: str | None = None,
    ) -> Forward:
        """Preprocess one image (or a list) like DIGITS and keep every layer's output for the batch."""
        from decoder.preprocess import preprocess_batch

        if self.spec is None:
            raise DecoderError("the model carries no image preprocessing (its input is not an image)", self.path)
        images = list(image) if isinstance(image, (list, tuple)) else [image]
        if not images:
            raise DecoderError("no image to forward")
        names = [str(i) if not isinstance(i, np.ndarray) else "<array>" for i in images]
        if name is not None:
            names[0] = name
        blob = preprocess_batch(images, self.spec)
        values = self.runner.run(blob)
        blobs = tuple(
            Blob(layer.name, layer.type, top, values[top])
            for layer in self.layers
            for top in layer.tops
            if top in values
        )
        prediction = None
        if self.score_output in values:
            probabilities = to_probabilities(values[self.score_output][:1], self.score_is_softmax)
            prediction = decode(probabilities, self.labels, names[:1])[0]
        return Forward(names[0], Blob(self.input_name, "Input", self.input_name, blob), blobs, prediction, tuple(names))

    def statistics(self, forward: Forward, bins: int = HISTOGRAM_BINS) -> list[LayerStats]:
        """The input's statistics, then each layer top's, in network order."""
        stats = [blob_statistics(forward.input.values, forward.input.layer, "Input", forward.input.top, 0, bins)]
        for blob in forward.blobs:
            count = self.parameters.get(blob.layer, 0)
            stats.append(blob_statistics(blob.values, blob.layer, blob.type, blob.top, count, bins))
        return stats


# --------------------------------------------------------------------------- helpers


def _finite_or_none(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _owner(node_name: str, layer_names: Sequence[str]) -> str | None:
    """The Caffe layer an ONNX node belongs to: the longest layer name that prefixes ``name/``."""
    best = None
    for layer in layer_names:
        if node_name.startswith(f"{layer}/") and (best is None or len(layer) > len(best)):
            best = layer
    return best


def _constants(model: Any) -> dict[str, np.ndarray]:
    """Initializers and Constant-node values by name (float data only matter here)."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _parameter_counts(model: Any, layers: Sequence[Any], constants: dict[str, np.ndarray]) -> dict[str, int]:
    """Values stored in the graph for each parameter-owning Caffe layer (float constants of its nodes).

    For Convolution and InnerProduct this equals Caffe's blob sizes (weights + bias). Layer
    types without trained blobs count 0 (see :data:`PARAMETER_LAYER_TYPES`).
    """
    names = [layer.name for layer in layers]
    types = {layer.name: layer.type for layer in layers}
    counts = dict.fromkeys(names, 0)
    seen: set[str] = set()
    for node in model.graph.node:
        owner = _owner(node.name, names)
        if owner is None or types[owner] not in PARAMETER_LAYER_TYPES:
            continue
        for name in node.input:
            value = constants.get(name)
            if value is not None and value.dtype.kind == "f" and name not in seen:
                seen.add(name)
                counts[owner] += int(value.size)
    return counts


def _filter_banks(
    model: Any,
    layer_names: Sequence[str],
    layers: Sequence[Any],
    spec: PreprocessSpec | None,
    path: Path,
    constants: dict[str, np.ndarray],
) -> list[FilterBank]:
    """Every Convolution layer's kernels, in network order."""
    producers = {out: node for node in model.graph.node for out in node.output}
    graph_inputs = {value.name for value in model.graph.input} - set(constants)
    by_layer: dict[str, Any] = {}
    for node in model.graph.node:
        owner = _owner(node.name, layer_names) if node.op_type == "Conv" else None
        if owner is not None:
            by_layer.setdefault(owner, node)
    banks = []
    for layer in layers:
        if layer.type != "Convolution":
            continue
        node = by_layer.get(layer.name)
        if node is None or len(node.input) < 2 or node.input[1] not in constants:
            raise DecoderError(f"layer {layer.name!r}: no Conv node with constant weights found in the graph", path)
        weights = constants[node.input[1]].astype(np.float32)
        bias = constants[node.input[2]].astype(np.float32) if len(node.input) > 2 and node.input[2] else None
        group = next((int(a.i) for a in node.attribute if a.name == "group"), 1)
        order = None
        reads_colour = spec is not None and spec.channels == 3 and weights.shape[1] == 3 and group == 1
        if reads_colour and _reads_input(node.input[0], producers, constants, graph_inputs):
            order = spec.channel_order
        banks.append(FilterBank(layer.name, weights, bias, group, order))
    return banks


def _reads_input(value: str, producers: dict[str, Any], constants: dict[str, np.ndarray], inputs: set[str]) -> bool:
    """Whether ``value`` is the graph input, possibly through elementwise ops with constants."""
    while value not in inputs:
        node = producers.get(value)
        if node is None or node.op_type not in _PASS_THROUGH_OPS:
            return False
        variable = [i for i in node.input if i and i not in constants]
        if len(variable) != 1:
            return False
        value = variable[0]
    return True
