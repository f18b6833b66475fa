"""What one image costs a converted model: multiply-adds and activation memory, stored in the .onnx.

Why: the right ONNX Runtime settings and batch sizes differ by two orders of magnitude
between LeNet (2.3 M multiply-adds, 28x28 grey) and ResNet-50 (3.9 G, 224x224 colour), and
the input's size says little about the memory a batch needs inside the network. Conversion
works the figures out once from the graph's shapes and writes them as ``decoder.cost``;
:mod:`decoder.runtime` reads them (without importing ``onnx``) to choose session options,
batch size and batches in flight.

- ``multiply_adds``: per image, of Conv / ConvTranspose / Gemm / MatMul nodes (the rest is
  a rounding error next to them).
- ``activation_bytes``: per image, the peak of the float32 values alive at once when the
  nodes run in graph order and each value is freed after its last reader - what ONNX
  Runtime's memory planner allocates for a batch, per image, give or take its reuse.
- ``weight_bytes``: the initializers' total size.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the runtime reads ModelCost without importing onnx (cold start)
    import onnx

COST_KEY = "decoder.cost"


@dataclass(frozen=True)
class ModelCost:
    """Per-image compute and memory of a model (see the module docstring)."""

    multiply_adds: int
    activation_bytes: int
    weight_bytes: int

    def to_metadata(self) -> dict[str, str]:
        return {COST_KEY: json.dumps(asdict(self))}

    @classmethod
    def from_metadata(cls, props: dict[str, str]) -> ModelCost | None:
        """The stored figures, or None when absent or not well-formed (then callers estimate)."""
        try:
            body = json.loads(props[COST_KEY])
            values = [body[name] for name in ("multiply_adds", "activation_bytes", "weight_bytes")]
        except (KeyError, TypeError, ValueError):
            return None
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**62 for v in values):
            return None
        return cls(*values)


_ELEMENT_BYTES = {1: 4, 7: 8, 11: 8}  # onnx.TensorProto FLOAT, INT64, DOUBLE; anything else counted as 4


def _per_image(info: onnx.ValueInfoProto) -> tuple[int, int] | None:
    """(elements per image, bytes per element) of a batch-first value; None when not known."""
    tensor = info.type.tensor_type
    dims = tensor.shape.dim
    if not dims or any(not d.HasField("dim_value") for d in dims[1:]):
        return None
    return int(np.prod([d.dim_value for d in dims[1:]], dtype=np.int64)), _ELEMENT_BYTES.get(tensor.elem_type, 4)


def model_cost(model: onnx.ModelProto) -> ModelCost:
    """The figures for ``model`` (its big initializers may be data-less, as conversion leaves them)."""
    import onnx

    graph = onnx.shape_inference.infer_shapes(model).graph
    weights = {t.name: tuple(int(d) for d in t.dims) for t in graph.initializer}
    weight_bytes = sum(
        int(np.prod(t.dims, dtype=np.int64)) * _ELEMENT_BYTES.get(t.data_type, 4) for t in graph.initializer
    )
    values = {v.name: v for v in [*graph.input, *graph.value_info, *graph.output] if v.name not in weights}
    sizes = {name: (size[0] * size[1]) for name, info in values.items() if (size := _per_image(info)) is not None}
    last_use: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            last_use[name] = index
    outputs = {o.name for o in graph.output}
    multiply_adds = 0
    live = sum(sizes.get(i.name, 0) for i in graph.input if i.name not in weights)
    peak = live
    for index, node in enumerate(graph.node):
        multiply_adds += _multiply_adds(node, values, weights)
        live += sum(sizes.get(o, 0) for o in node.output)
        peak = max(peak, live)
        live -= sum(sizes.get(i, 0) for i in set(node.input) if last_use.get(i) == index and i not in outputs)
    return ModelCost(int(multiply_adds), int(peak), int(weight_bytes))


def _multiply_adds(node: onnx.NodeProto, values: dict[str, onnx.ValueInfoProto], weights: dict) -> int:
    if len(node.input) < 2 or node.input[1] not in weights:
        return 0
    weight = weights[node.input[1]]
    if node.op_type in ("Conv", "ConvTranspose"):
        # Conv: each output element sums over C_in/group x kh x kw; ConvTranspose: each input element
        # scatters over C_out/group x kh x kw.
        reference = values.get(node.output[0] if node.op_type == "Conv" else node.input[0])
        size = _per_image(reference) if reference is not None else None
        return 0 if size is None else size[0] * int(np.prod(weight[1:], dtype=np.int64))
    if node.op_type == "Gemm":
        return int(np.prod(weight, dtype=np.int64))
    if node.op_type == "MatMul":
        output = values.get(node.output[0])
        size = _per_image(output) if output is not None else None
        return 0 if size is None else size[0] * int(weight[0])
    return 0
