"""The state a layer converter works in: ONNX names of Caffe blobs, shapes, weights, nodes.

Caffe blobs may be rewritten in place (``top == bottom``); ONNX values are written once.
Each write of a Caffe blob therefore gets its own ONNX name, and the LAST write keeps the
blob's own name, so graph outputs and intermediate blobs are found under their Caffe
names. Shapes are not computed by hand in every converter: after each layer, ONNX shape
inference runs on just the nodes that layer added, which also checks them early and
names the Caffe layer when something does not fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from decoder.caffe_io import CaffeNet
from decoder.caffe_proto import caffe_pb2
from decoder.errors import DecoderError

Dim = int | str
Shape = tuple[Dim, ...]
BATCH_DIM = "N"


class BatchCoupled(Exception):
    """A layer mixes the images of a batch: the graph must be rebuilt with Caffe's declared batch.

    Not a :class:`DecoderError`: it is control flow between :meth:`ConversionContext.couple_batch`
    and :func:`decoder.converter.convert_net`, never shown to a user as such.
    """


# Initializers up to this size are given to per-layer shape inference by value (Reshape
# targets, Slice starts ...); larger ones only by shape, to keep inference cheap.
_INLINE_CONSTANT_LIMIT = 4096
#: Initializers of at least this many bytes are kept as arrays in ``detached`` (data-less
#: TensorProtos in the graph) until written; always above the inline limit's 4096 values.
DETACH_BYTES = 64 * 1024


class ConversionContext:
    """Builds one ONNX graph from a Caffe net, layer by layer."""

    def __init__(self, net: CaffeNet, opset: int, batch: int | None = None, placeholder_weights: bool = False) -> None:
        self.net = net
        #: Inspecting a bare prototxt: weights are zeros of the shape each layer asks for.
        self.placeholder_weights = placeholder_weights
        self.opset = opset
        #: None: the batch axis is the dynamic "N"; else every input's declared batch is kept.
        self.batch = batch
        #: Why the graph keeps a fixed batch (layers that mix images), and how literal batches were read.
        self.batch_couplings: list[str] = []
        self.batch_notes: list[str] = []
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        #: Data of the initializers that are only a name, type and dims in ``initializers``.
        self.detached: dict[str, np.ndarray] = {}
        self.shapes: dict[str, Shape] = {}
        self.current: dict[str, str] = {}
        self.layer_tops: dict[str, list[str]] = {}
        self.layer_nodes: dict[str, list[str]] = {}
        self._constants: dict[str, onnx.TensorProto] = {}
        self._used: set[str] = set()
        self._reserved: set[str] = {i.name for i in net.inputs}
        self._last_writer: dict[str, int] = {}
        for index, layer in enumerate(net.layers):
            for top in layer.top:
                self._last_writer[top] = index
                self._reserved.add(top)
        #: info.json's "caffe flavor" when known (BatchNorm blob layouts differ by flavour).
        self.caffe_flavor: str | None = None
        self.layer: caffe_pb2.LayerParameter = caffe_pb2.LayerParameter()
        self.layer_index = -1
        self._layer_first_node = 0
        for net_input in net.inputs:
            shape: Shape = (BATCH_DIM if batch is None else batch, *net_input.shape[1:])
            self.shapes[net_input.name] = shape
            self.current[net_input.name] = net_input.name
            self._used.add(net_input.name)

    # ---- used by the driver -------------------------------------------------------
    def begin_layer(self, index: int, layer: caffe_pb2.LayerParameter) -> None:
        self.layer = layer
        self.layer_index = index
        self._layer_first_node = len(self.nodes)

    def end_layer(self) -> None:
        """Infer and record the shapes of everything the layer produced."""
        new_nodes = self.nodes[self._layer_first_node :]
        for top in self.layer.top:
            if top not in self.current:
                raise self.error(f"produced no value for top {top!r}")
        if new_nodes:
            self._infer_shapes(new_nodes)
        if self.batch is None:
            for top in self.layer.top:
                shape = self.shapes.get(self.current[top], ())
                if not shape or shape[0] != BATCH_DIM or BATCH_DIM in shape[1:]:
                    self.couple_batch(
                        f"its output {top!r} has shape {list(shape)}: the images are not on the first axis"
                    )
        self.layer_tops[self.layer.name] = [self.current[t] for t in self.layer.top]
        self.layer_nodes[self.layer.name] = [node.name for node in new_nodes]

    # ---- used by converters -----------------------------------------------------
    @property
    def name(self) -> str:
        return self.layer.name

    def error(self, message: str) -> DecoderError:
        """An error about the current layer (the driver adds the file name)."""
        return DecoderError(f"layer {self.layer.name!r} ({self.layer.type}): {message}")

    @property
    def declared_batch(self) -> int:
        """The batch the prototxt declares for its (first) input: what Caffe's literal batch sizes mean."""
        return int(self.net.inputs[0].shape[0]) if self.net.inputs and self.net.inputs[0].shape else 1

    def couple_batch(self, reason: str) -> None:
        """The current layer mixes the images of a batch (Caffe's answer for an image depends on
        which others share its call): keep Caffe's declared batch instead of a dynamic one.

        With a dynamic batch this stops the conversion (:class:`BatchCoupled`), and the driver
        starts again with the declared batch; then the reason is recorded and the layer goes on.
        """
        message = f"layer {self.layer.name!r} ({self.layer.type}) {reason}"
        if self.batch is None:
            raise BatchCoupled(message)
        if message not in self.batch_couplings:
            self.batch_couplings.append(message)

    def note_batch(self, note: str) -> None:
        """Say how a literal batch size in the current layer was read (shown by `decode convert`)."""
        self.batch_notes.append(f"layer {self.layer.name!r} ({self.layer.type}) {note}")

    def bottoms(self, count: int | None = None) -> list[str]:
        """ONNX names of the current layer's bottoms (checked against ``count``)."""
        if count is not None and len(self.layer.bottom) != count:
            raise self.error(f"expects {count} bottom blob(s), has {len(self.layer.bottom)}")
        names = []
        for bottom in self.layer.bottom:
            if bottom not in self.current:
                raise self.error(f"bottom blob {bottom!r} is not produced by any earlier layer or input")
            names.append(self.current[bottom])
        return names

    def bottom(self) -> str:
        """The single bottom of a one-input layer."""
        return self.bottoms(1)[0]

    def tops(self, count: int | None = None) -> list[str]:
        """Fresh ONNX names for the current layer's tops (the last write keeps the Caffe name)."""
        if count is not None and len(self.layer.top) != count:
            raise self.error(f"expects {count} top blob(s), has {len(self.layer.top)}")
        names = []
        for top in self.layer.top:
            last = self._last_writer.get(top) == self.layer_index and top not in self._used
            name = top if last else self.fresh(f"{top}/{self.layer.name}")
            self._used.add(name)
            self.current[top] = name
            names.append(name)
        return names

    def top(self) -> str:
        """The single top of a one-output layer."""
        return self.tops(1)[0]

    def shape(self, onnx_name: str) -> Shape:
        """The (inferred) shape of an ONNX value; the batch dimension is ``"N"`` when dynamic."""
        return self.shapes[onnx_name]

    def static_dims(self, onnx_name: str, first: int = 1) -> tuple[int, ...]:
        """Dimensions from ``first`` on, which must be known numbers."""
        dims = self.shape(onnx_name)[first:]
        if not all(isinstance(d, int) for d in dims):
            raise self.error(f"needs a static input shape from axis {first}, got {list(self.shape(onnx_name))}")
        return tuple(int(d) for d in dims)

    def blobs(self, *allowed_counts: int) -> list[np.ndarray]:
        """The layer's trained blobs (float32), checked to be one of ``allowed_counts`` in number."""
        blobs = self.net.weights.get(self.layer.name, [])
        if self.placeholder_weights and not blobs:
            return [np.zeros(0, np.float32) for _ in range(max(allowed_counts, default=0))]
        if allowed_counts and len(blobs) not in allowed_counts:
            if not blobs:
                raise self.error(
                    "has no weights in the caffemodel (was the layer renamed? Caffe would silently "
                    "keep random weights here)"
                )
            expected = " or ".join(str(c) for c in allowed_counts)
            raise self.error(f"has {len(blobs)} weight blob(s) in the caffemodel, expected {expected}")
        return blobs

    def reshape_blob(self, blob: np.ndarray, shape: Sequence[int], what: str) -> np.ndarray:
        """A weight blob in the shape the layer needs; legacy 4-D shapes are accepted by count."""
        shape = tuple(int(s) for s in shape)
        if self.placeholder_weights and blob.size == 0:
            return np.zeros(shape, np.float32)
        if blob.size != int(np.prod(shape, dtype=np.int64)):
            raise self.error(
                f"{what} in the caffemodel has shape {list(blob.shape)} ({blob.size} values), "
                f"but the prototxt needs {list(shape)}"
            )
        return blob.reshape(shape)

    def fresh(self, hint: str) -> str:
        """A value or initializer name not used anywhere in the graph."""
        name = hint
        counter = 1
        while name in self._used or name in self._reserved:
            counter += 1
            name = f"{hint}_{counter}"
        self._used.add(name)
        return name

    def const(self, array: np.ndarray | Sequence[float] | Sequence[int], hint: str, dtype: Any = None) -> str:
        """Add an initializer; float data is stored as float32, integer data as int64 unless ``dtype``."""
        values = np.asarray(array)
        if dtype is not None:
            values = values.astype(dtype, copy=False)
        elif values.dtype.kind == "f":
            values = values.astype(np.float32, copy=False)  # weights read from a caffemodel stay views of it
        elif values.dtype.kind in "iub":
            values = values.astype(np.int64, copy=False)
        name = self.fresh(f"{self.layer.name}/{hint}")
        if values.nbytes >= DETACH_BYTES:
            # Big weights stay numpy arrays until the file is written (decoder.onnx_writer):
            # copying them into protobuf would hold every weight twice more.
            tensor = onnx.TensorProto(
                name=name, dims=values.shape, data_type=helper.np_dtype_to_tensor_dtype(values.dtype)
            )
            self.detached[name] = values
        else:
            tensor = numpy_helper.from_array(values, name)
        self.initializers.append(tensor)
        self._constants[name] = tensor
        self.shapes[name] = tuple(int(d) for d in values.shape)
        return name

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str] | int = 1, **attrs: Any) -> list[str]:
        """Add an ONNX node; ``outputs`` are names, or a count of fresh intermediate names."""
        if isinstance(outputs, int):
            outputs = [self.fresh(f"{self.layer.name}/{op_type.lower()}") for _ in range(outputs)]
        node_name = self.fresh(f"{self.layer.name}/{op_type}")
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs), name=node_name, **attrs))
        return list(outputs)

    def alias(self, source: str) -> str:
        """Make the single top an Identity of ``source`` (pass-through layers such as Dropout)."""
        return self.node("Identity", [source], [self.top()])[0]

    # ---- shape inference on the nodes of one layer --------------------------------
    def _value_info(self, name: str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(self.shapes[name]))

    def _infer_shapes(self, new_nodes: list[onnx.NodeProto]) -> None:
        produced = {out for node in new_nodes for out in node.output}
        consumed: list[str] = []
        for node in new_nodes:
            consumed.extend(i for i in node.input if i and i not in produced and i not in consumed)
        inputs, inits = [], []
        for name in consumed:
            tensor = self._constants.get(name)
            if tensor is not None and int(np.prod(tensor.dims, dtype=np.int64)) <= _INLINE_CONSTANT_LIMIT:
                inits.append(tensor)
            elif tensor is not None:
                inputs.append(helper.make_tensor_value_info(name, tensor.data_type, list(tensor.dims)))
            else:
                if name not in self.shapes:
                    raise self.error(f"internal: no shape known for {name!r}")
                inputs.append(self._value_info(name))
        outputs = [helper.make_empty_tensor_value_info(o) for node in new_nodes for o in node.output if o]
        graph = helper.make_graph(new_nodes, "layer", inputs, outputs, initializer=inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise self.error(f"does not fit its input shapes ({first})") from None
        found = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output]}
        for name in (o for node in new_nodes for o in node.output if o):
            info = found.get(name)
            if info is None or not info.type.tensor_type.HasField("shape"):
                raise self.error(f"internal: could not infer the shape of {name!r}")
            dims: list[Dim] = []
            for d in info.type.tensor_type.shape.dim:
                if d.HasField("dim_value"):
                    dims.append(int(d.dim_value))
                else:
                    dims.append(d.dim_param or "?")
            if any(isinstance(d, int) and d <= 0 for d in dims):
                raise self.error(f"output {name!r} would have an empty shape {dims}")
            self.shapes[name] = tuple(dims)
