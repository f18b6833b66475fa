"""`decode inspect`: a per-layer table of a converted model or a Caffe net.

For each Caffe layer: its type, output shape(s), parameter count and multiply-adds per
image (convolutions, deconvolutions and fully connected layers; element-wise layers and
pooling are not counted, they are a rounding error next to them). The figures come from
the ONNX graph the layer became, so they describe exactly what runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from decoder.spec import read_graph_metadata


@dataclass(frozen=True)
class LayerRow:
    """One line of the inspect table."""

    name: str
    type: str
    output_shapes: tuple[tuple[int | str, ...], ...]
    parameters: int
    multiply_adds: int


@dataclass(frozen=True)
class Inspection:
    """The whole table plus totals."""

    source: str
    inputs: dict[str, tuple[int | str, ...]]
    rows: tuple[LayerRow, ...]

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
            "layers": [asdict(r) | {"output_shapes": [list(s) for s in r.output_shapes]} for r in self.rows],
            "total_parameters": self.total_parameters,
            "total_multiply_adds": self.total_multiply_adds,
        }


def _shape(info: onnx.ValueInfoProto) -> tuple[int | str, ...]:
    dims = info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)


def _per_image(shape: tuple[int | str, ...]) -> int:
    """Elements per image of a (batch-first) shape."""
    return int(np.prod([d for d in shape[1:] if isinstance(d, int)], dtype=np.int64))


def _node_multiply_adds(node: onnx.NodeProto, shapes: dict[str, tuple], weights: dict[str, tuple[int, ...]]) -> int:
    if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1 and node.input[1] in weights:
        kernel = int(np.prod(weights[node.input[1]][1:], dtype=np.int64))
        # Conv: each output element sums over (C_in/group x kh x kw); ConvTranspose: each input element
        # scatters over (C_out/group x kh x kw).
        reference = node.output[0] if node.op_type == "Conv" else node.input[0]
        return _per_image(shapes.get(reference, ())) * kernel
    if node.op_type == "Gemm" and node.input[1] in weights:
        return int(np.prod(weights[node.input[1]], dtype=np.int64))
    if node.op_type == "MatMul" and node.input[1] in weights:
        w = weights[node.input[1]]
        return _per_image(shapes.get(node.output[0], ())) * int(w[0])
    return 0


def inspect_model(model: onnx.ModelProto, source: str) -> Inspection:
    """The per-layer table of a model written by `decode convert`."""
    props = {p.key: p.value for p in model.metadata_props}
    layers = read_graph_metadata(props, source)["layers"]
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    shapes = {v.name: _shape(v) for v in [*graph.input, *graph.value_info, *graph.output]}
    weights = {t.name: tuple(t.dims) for t in graph.initializer}
    float_params = {t.name: int(np.prod(t.dims, dtype=np.int64)) for t in graph.initializer if t.data_type == 1}
    nodes = {n.name: n for n in graph.node}
    rows = []
    for layer in layers:
        layer_nodes = [nodes[n] for n in layer.get("nodes", []) if n in nodes]
        used = {i for n in layer_nodes for i in n.input if i in float_params}
        # Constants that only shape the computation (pooling divisors, Power's operands) are not weights.
        params = sum(float_params[i] for i in used if float_params[i] > 1 and not i.endswith("ave_divisor"))
        macs = sum(_node_multiply_adds(n, shapes, weights) for n in layer_nodes)
        rows.append(
            LayerRow(layer["name"], layer["type"], tuple(shapes.get(t, ()) for t in layer["tops"]), params, macs)
        )
    inputs = {i.name: _shape(i) for i in graph.input if i.name not in weights}
    return Inspection(source, inputs, tuple(rows))


def inspect_path(path: str, weights: str | None = None) -> Inspection:
    """Inspect a .onnx, or anything `decode convert` accepts (converted in memory)."""
    p = Path(path)
    if p.suffix.lower() == ".onnx":
        from decoder.intermediates import load_onnx

        return inspect_model(load_onnx(p), str(p))
    from decoder.caffe_io import load_net
    from decoder.conversion import graph_metadata, score_output_of
    from decoder.converter import convert_net
    from decoder.sources import open_sources

    if p.suffix.lower() == ".prototxt":
        net = load_net(p, weights)
        graph = convert_net(net, placeholder_weights=weights is None)
    else:
        with open_sources(p, weights=weights) as sources:
            net = load_net(sources.prototxt, sources.caffemodel)
            graph = convert_net(net)
    onnx.helper.set_model_props(graph.model, graph_metadata(graph, net, score_output_of(graph.outputs)))
    return inspect_model(graph.model, str(p))


def _human(count: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:.2f}{unit}"
    return str(count)


def format_table(inspection: Inspection) -> str:
    """A fixed-width text table for the terminal."""
    header = ("layer", "type", "output shape", "params", "mult-adds")
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
    lines.append(
        f"input {inputs}; {len(inspection.rows)} layers, {inspection.total_parameters:,} parameters, "
        f"{_human(inspection.total_multiply_adds)} multiply-adds per image"
    )
    return "\n".join(lines)
