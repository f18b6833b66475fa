"""`decode inspect`: what a model is fed (its preprocessing and labels) and a per-layer table.

The preprocessing block is read from the model's metadata (``decoder.spec``), with the
source of each setting when conversion recorded it (``PreprocessSpec.provenance``;
phrases starting with "assumed" are guesses, and are printed as such). Caffe sources are
converted first, into a temporary file, so they show exactly what `decode convert` would
write.

The table: for each Caffe layer its type, output shape(s), parameter count and
multiply-adds per image (convolutions, deconvolutions and fully connected layers;
element-wise layers and pooling are not counted, they are a rounding error next to them).
The figures come from the ONNX graph the layer became, so they describe exactly what runs.
An .onnx with no Caffe layer map (made by another tool, then given metadata with
`decode attach`) gets one row per ONNX node instead. Symbolic batch dimensions print as
``N``; other unnamed symbolic dimensions as ``?``.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from decoder.errors import DecoderError
from decoder.spec import ASSUMED_PREFIX, GRAPH_KEY, SPEC_KEY, PreprocessSpec, read_graph_metadata

#: Labels shown by name in the text block (all of them are in the JSON).
SHOWN_LABELS = 5

Dim = int | str


@dataclass(frozen=True)
class LayerRow:
    """One line of the inspect table."""

    name: str
    type: str
    output_shapes: tuple[tuple[Dim, ...], ...]
    parameters: int
    multiply_adds: int


@dataclass(frozen=True)
class Setting:
    """One line of the preprocessing block: a setting, its value in words, where it came from."""

    name: str
    value: str
    source: str = ""  # the provenance phrase; "" when the file does not record one

    @property
    def assumed(self) -> bool:
        return self.source.startswith(ASSUMED_PREFIX)


@dataclass(frozen=True)
class Inspection:
    """The preprocessing block, the whole table and its totals."""

    source: str
    inputs: dict[str, tuple[Dim, ...]]
    rows: tuple[LayerRow, ...]
    settings: tuple[Setting, ...] = ()
    preprocessing: dict[str, Any] | None = None  # machine-readable form of ``settings`` (JSON)
    no_preprocessing: str = ""  # why there is no preprocessing block
    batch: int | None = None  # the fixed batch size, or None when the batch is dynamic
    rows_are: str = "caffe layers"  # or "onnx nodes" for a model without a Caffe layer map
    notes: tuple[str, ...] = field(default=())

    @property
    def total_parameters(self) -> int:
        return sum(r.parameters for r in self.rows)

    @property
    def total_multiply_adds(self) -> int:
        return sum(r.multiply_adds for r in self.rows)

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "inputs": {k: list(v) for k, v in self.inputs.items()},
            "batch": "dynamic" if self.batch is None else self.batch,
            "preprocessing": self.preprocessing,
            "no_preprocessing": self.no_preprocessing or None,
            "rows_are": self.rows_are,
            "layers": [asdict(r) | {"output_shapes": [list(s) for s in r.output_shapes]} for r in self.rows],
            "total_parameters": self.total_parameters,
            "total_multiply_adds": self.total_multiply_adds,
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- shapes


def _shape(info: onnx.ValueInfoProto) -> tuple[Dim, ...]:
    """Dimensions as ints; a symbolic batch (axis 0) as ``N``, other unnamed symbols (``unk__1``) as ``?``."""
    dims: list[Dim] = []
    for axis, d in enumerate(info.type.tensor_type.shape.dim):
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif axis == 0:
            dims.append("N")
        else:
            dims.append("?" if not d.dim_param or d.dim_param.startswith("unk__") else d.dim_param)
    return tuple(dims)


def _per_image(shape: tuple[Dim, ...]) -> int:
    """Elements per image of a (batch-first) shape."""
    return int(np.prod([d for d in shape[1:] if isinstance(d, int)], dtype=np.int64))


def _node_multiply_adds(node: onnx.NodeProto, shapes: dict[str, tuple], weights: dict[str, tuple[int, ...]]) -> int:
    if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1 and node.input[1] in weights:
        kernel = int(np.prod(weights[node.input[1]][1:], dtype=np.int64))
        # Conv: each output element sums over (C_in/group x kh x kw); ConvTranspose: each input element
        # scatters over (C_out/group x kh x kw).
        reference = node.output[0] if node.op_type == "Conv" else node.input[0]
        return _per_image(shapes.get(reference, ())) * kernel
    if node.op_type == "Gemm" and len(node.input) > 1 and node.input[1] in weights:
        return int(np.prod(weights[node.input[1]], dtype=np.int64))
    if node.op_type == "MatMul" and len(node.input) > 1 and node.input[1] in weights:
        w = weights[node.input[1]]
        return _per_image(shapes.get(node.output[0], ())) * int(w[0])
    return 0


# --------------------------------------------------------------------------- the table


def _layer_rows(
    model: onnx.ModelProto, layers: list[dict[str, Any]], shapes: dict[str, tuple[Dim, ...]]
) -> tuple[LayerRow, ...]:
    """One row per Caffe layer (``layers`` from ``decoder.graph``), or per ONNX node when it is empty."""
    graph = model.graph
    weights = {t.name: tuple(t.dims) for t in graph.initializer}
    float_params = {t.name: int(np.prod(t.dims, dtype=np.int64)) for t in graph.initializer if t.data_type == 1}
    if not layers:  # another tool's graph: its nodes are the layers
        layers = [
            {"name": n.name or n.output[0], "type": n.op_type, "tops": list(n.output), "nodes": [n.name], "node": n}
            for n in graph.node
            if n.op_type != "Constant"
        ]
    nodes = {n.name: n for n in graph.node}
    rows = []
    for layer in layers:
        layer_nodes = [layer["node"]] if "node" in layer else [nodes[n] for n in layer.get("nodes", []) if n in nodes]
        used = {i for n in layer_nodes for i in n.input if i in float_params}
        # Constants that only shape the computation (pooling divisors, Power's operands) are not weights.
        params = sum(float_params[i] for i in used if float_params[i] > 1 and not i.endswith("ave_divisor"))
        macs = sum(_node_multiply_adds(n, shapes, weights) for n in layer_nodes)
        tops = tuple(shapes.get(t, ()) for t in layer["tops"])
        rows.append(LayerRow(layer["name"], layer["type"], tops, params, macs))
    return tuple(rows)


# --------------------------------------------------------------------------- preprocessing


def _labels_text(labels: tuple[str, ...]) -> str:
    if not labels:
        return "none (predictions print class indices)"
    shown = ", ".join(labels[:SHOWN_LABELS]) + (", ..." if len(labels) > SHOWN_LABELS else "")
    return f"{len(labels)}: {shown}"


def _mean_text(spec: PreprocessSpec) -> str:
    if spec.mean is None:
        return "none (pixels are fed as they are)"
    averages = ", ".join(f"{v:.1f}" for v in np.asarray(spec.mean, np.float64).reshape(spec.channels, -1).mean(1))
    shape = "x".join(str(d) for d in spec.mean.shape)
    origin = f" from {spec.sources['mean']}" if spec.sources.get("mean") else ""
    if spec.mean_kind == "image":
        return f"mean image {shape}{origin} subtracted (channel averages {averages})"
    return f"mean pixel ({averages}){origin} subtracted"


def _settings(spec: PreprocessSpec, graph: dict[str, Any] | None, batch: int | None) -> tuple[Setting, ...]:
    """The preprocessing block's lines, each with its recorded source."""
    source = spec.provenance.get
    colour = spec.channels == 3
    order = f"{spec.channel_order} (the blob's channel order)" if colour else "grey (one channel)"
    resize = f"{spec.resize_mode} to {spec.width}x{spec.height}"
    resize_source = source("resize_mode", "")
    if spec.dataset_size is not None:
        height, width = spec.dataset_size
        resize = f"{spec.resize_mode} to the dataset's {width}x{height}, then squashed to {spec.width}x{spec.height}"
        if source("dataset_size"):
            resize_source = "; ".join(s for s in (resize_source, f"dataset size: {source('dataset_size')}") if s)
    batch_text = "dynamic (any N)" if batch is None else f"fixed: {batch} (the graph accepts only batches of {batch})"
    lines = [
        Setting(
            "input",
            f"{spec.input_name}: {spec.channels}x{spec.height}x{spec.width} (C x H x W)",
            source("input_shape", ""),
        ),
        Setting("channels", order, source("channel_order", "")),
        Setting("resize", resize, resize_source),
        Setting("mean", _mean_text(spec), source("mean", "")),
        Setting("scale", f"{spec.scale:g} (multiplies the pixels after the mean)", source("scale", "")),
        Setting("labels", _labels_text(spec.labels), source("labels", "")),
    ]
    if graph is not None and graph.get("score_output"):
        kind = "already a softmax" if graph.get("score_is_softmax") else "not a softmax: one is applied"
        if graph.get("kind") == "other":  # decoder.heads: no label to give; `decode run` gives the outputs
            kind = f"not a classifier ({graph.get('kind_reason', '')}): `decode run` gives every output"
        lines.append(Setting("scores", f"output {graph['score_output']!r}, {kind}", source("score_output", "")))
    lines.append(Setting("batch", batch_text))
    return tuple(lines)


def _preprocessing_dict(spec: PreprocessSpec, graph: dict[str, Any] | None, batch: int | None) -> dict[str, Any]:
    mean = None if spec.mean is None else np.asarray(spec.mean, np.float64).reshape(spec.channels, -1).mean(1)
    return {
        "input_name": spec.input_name,
        "channels": spec.channels,
        "height": spec.height,
        "width": spec.width,
        "channel_order": spec.channel_order,
        "resize_mode": spec.resize_mode,
        "dataset_size": None if spec.dataset_size is None else list(spec.dataset_size),
        "mean_kind": spec.mean_kind,
        "mean_shape": None if spec.mean is None else list(spec.mean.shape),
        "mean_channel_averages": None if mean is None else [float(v) for v in mean],
        "scale": spec.scale,
        "labels_count": len(spec.labels),
        "labels": list(spec.labels),
        "score_output": None if graph is None else graph.get("score_output"),
        "score_is_softmax": None if graph is None else bool(graph.get("score_is_softmax", False)),
        "kind": None if graph is None else graph.get("kind"),
        "batch": "dynamic" if batch is None else batch,
        "sources": dict(spec.sources),
        "provenance": dict(spec.provenance),
        "assumed": sorted(spec.assumed()),
    }


# --------------------------------------------------------------------------- entry points


def inspect_model(model: onnx.ModelProto, source: str) -> Inspection:
    """The preprocessing block and per-layer table of a .onnx (ours, attached, or any other)."""
    props = {p.key: p.value for p in model.metadata_props}
    graph_meta = read_graph_metadata(props, source) if GRAPH_KEY in props else None
    spec = PreprocessSpec.from_metadata(props, source) if SPEC_KEY in props else None
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    shapes = {v.name: _shape(v) for v in [*graph.input, *graph.value_info, *graph.output]}
    initializers = {t.name for t in graph.initializer}
    inputs = {i.name: _shape(i) for i in graph.input if i.name not in initializers}
    layers = [] if graph_meta is None else graph_meta["layers"]
    rows = _layer_rows(inferred, layers, shapes)
    image_input = spec.input_name if spec is not None and spec.input_name in inputs else next(iter(inputs), None)
    first = inputs.get(image_input, ("N",)) if image_input is not None else ("N",)
    batch = first[0] if first and isinstance(first[0], int) else None
    notes = []
    if spec is None:
        settings: tuple[Setting, ...] = ()
        preprocessing = None
        why = (
            "none stored: the input is not a 1- or 3-channel image"
            if graph_meta is not None
            else "none stored: not written by `decode convert`; add it with `decode attach` (see its --help)"
        )
    else:
        settings, preprocessing, why = (
            _settings(spec, graph_meta, batch),
            _preprocessing_dict(spec, graph_meta, batch),
            "",
        )
        if spec.assumed():
            guesses = ", ".join(sorted(spec.assumed()))
            notes.append(f"{len(spec.assumed())} setting(s) assumed, not stated by any file: {guesses}")
    rows_are = "caffe layers" if layers else "onnx nodes"
    if not layers and graph_meta is not None:
        notes.append("no Caffe layer map in the file (made by another tool): one row per ONNX node")
    return Inspection(source, inputs, rows, settings, preprocessing, why, batch, rows_are, tuple(notes))


def _load(path: Path) -> onnx.ModelProto:
    """The .onnx without its external weight files (shapes are all the table needs)."""
    if path.is_dir():
        raise DecoderError("is a directory, expected a .onnx model", path)
    if not path.is_file():
        raise DecoderError("model file not found", path)
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError, onnx its own types
        raise DecoderError(f"not a readable ONNX model ({type(exc).__name__})", path) from None


def _table_only(
    prototxt: Path, caffemodel: Path | None, source: str, why: str, input_shape: tuple[int, int, int] | None
) -> Inspection:
    """The layer table of a Caffe net converted in memory, without preprocessing (``why`` says so)."""
    from decoder.caffe_io import load_net
    from decoder.conversion import graph_metadata, score_output_of
    from decoder.converter import convert_net

    net = load_net(prototxt, caffemodel, input_shape=input_shape)
    graph = convert_net(net, placeholder_weights=caffemodel is None)  # placeholders have the right shapes
    onnx.helper.set_model_props(graph.model, graph_metadata(graph, net, score_output_of(graph.outputs)))
    return replace(inspect_model(graph.model, source), no_preprocessing=why)


def inspect_path(
    path: str,
    weights: str | None = None,
    overrides: dict[str, object] | None = None,
    mean: str | None = None,
    labels: str | None = None,
) -> Inspection:
    """Inspect a .onnx, or anything `decode convert` accepts (converted to a temporary file first).

    When conversion refuses the files for a preprocessing reason (a mean file named but
    missing, say), the layer table is still shown and the preprocessing line gives the reason.
    ``overrides``, ``mean``, ``labels``: `decode convert`'s options, for Caffe files.
    """
    from decoder.conversion import given_overrides

    p = Path(path)
    input_shape = (overrides or {}).get("input_shape")
    if p.suffix.lower() == ".onnx":
        given = given_overrides(overrides) + [f"--{k}" for k, v in (("mean", mean), ("labels", labels)) if v]
        if given:
            raise DecoderError(
                f"{', '.join(given)}: options for converting Caffe files; a .onnx carries its own settings", p
            )
        return inspect_model(_load(p), str(p))
    from decoder.sources import open_sources

    if p.suffix.lower() == ".prototxt" and weights is None:
        why = "none: a bare prototxt (give --weights to convert it as a whole)"
        return _table_only(p, None, str(p), why, input_shape)
    from decoder.conversion import convert

    sources_args = {"prototxt": p, "weights": weights} if p.suffix.lower() == ".prototxt" else {"weights": weights}
    sources_args |= {"mean": mean, "labels": labels}
    with tempfile.TemporaryDirectory(prefix="decoder-inspect-") as folder:
        output = Path(folder) / "model.onnx"
        with open_sources(None if "prototxt" in sources_args else p, **sources_args) as sources:
            try:
                convert(sources, output, overrides=overrides)
            except DecoderError as exc:
                # The net may still convert on its own; if not, its own error is the one to show.
                why = f"not worked out: {exc.message}"
                return _table_only(sources.prototxt, sources.caffemodel, str(p), why, input_shape)
        return inspect_model(_load(output), str(p))


# --------------------------------------------------------------------------- text


def _human(count: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:.2f}{unit}"
    return str(count)


def format_preprocessing(inspection: Inspection) -> str:
    """The preprocessing block: one line per setting, its source on the line below when recorded."""
    if not inspection.settings:
        return f"preprocessing: {inspection.no_preprocessing}"
    recorded = any(setting.source for setting in inspection.settings)
    lines = ["preprocessing (stored in the model" + ("; where each setting came from below it):" if recorded else "):")]
    for setting in inspection.settings:
        lines.append(f"  {setting.name:<9} {setting.value}")
        if setting.source:
            lines.append(f"  {'':<9}   {'ASSUMED' if setting.assumed else 'from'}: {_unprefixed(setting.source)}")
    return "\n".join(lines)


def _unprefixed(source: str) -> str:
    """A provenance phrase without its "assumed" marker (the line says ASSUMED instead)."""
    if source.startswith(ASSUMED_PREFIX):
        return source[len(ASSUMED_PREFIX) :].lstrip(" :")
    return source


def format_table(inspection: Inspection) -> str:
    """A fixed-width text table for the terminal."""
    header = (
        "layer" if inspection.rows_are == "caffe layers" else "node",
        "type",
        "output shape",
        "params",
        "mult-adds",
    )
    body = []
    for row in inspection.rows:
        shape = "; ".join("x".join(str(d) for d in s) for s in row.output_shapes)
        body.append((row.name, row.type, shape, f"{row.parameters:,}", _human(row.multiply_adds)))
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    inputs = ", ".join(f"{n} {'x'.join(str(d) for d in s)}" for n, s in inspection.inputs.items())
    kind = "layers" if inspection.rows_are == "caffe layers" else "ONNX nodes"
    lines.append(
        f"input {inputs}; {len(inspection.rows)} {kind}, {inspection.total_parameters:,} parameters, "
        f"{_human(inspection.total_multiply_adds)} multiply-adds per image"
    )
    return "\n".join(lines)


def format_inspection(inspection: Inspection) -> str:
    """What `decode inspect` prints: the model, its preprocessing, notes, then the layer table."""
    parts = [f"model: {inspection.source}", format_preprocessing(inspection)]
    parts += [f"note: {note}" for note in inspection.notes]
    return "\n".join(parts) + "\n\n" + format_table(inspection)
