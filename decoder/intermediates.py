"""Every Caffe layer's output, exposed: the basis of `diagnose`, `compare` and `visualize`.

A converted graph records (metadata ``decoder.graph``) which ONNX values hold each Caffe
layer's tops. Here those values are added as extra graph outputs, so one ONNX Runtime
call returns the whole forward pass, layer by layer, under Caffe's layer names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from decoder.errors import DecoderError
from decoder.spec import read_graph_metadata

if TYPE_CHECKING:
    import onnx


@dataclass(frozen=True)
class LayerOutput:
    """One Caffe layer and the ONNX values of its tops."""

    name: str
    type: str
    tops: tuple[str, ...]


def load_onnx(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Read a .onnx with the ``onnx`` package; missing, folder or unreadable -> DecoderError."""
    import onnx

    p = Path(path)
    if p.is_dir():
        raise DecoderError("is a directory, expected a .onnx model", p)
    if not p.is_file():
        raise DecoderError("model file not found", p)
    try:
        return onnx.load(str(p))
    except Exception as exc:  # protobuf raises DecodeError, onnx its own types
        raise DecoderError(f"not a readable ONNX model ({type(exc).__name__})", p) from None


class LayerRunner:
    """Runs a converted model and returns every layer's output blobs."""

    def __init__(self, path: str | os.PathLike[str], model: onnx.ModelProto | None = None) -> None:
        """Open ``path`` (or use its already loaded ``model``, which is left as it was)."""
        import onnxruntime as ort
        from onnx import TensorProto, helper

        p = Path(path)
        model = load_onnx(p) if model is None else model
        props = {prop.key: prop.value for prop in model.metadata_props}
        body = read_graph_metadata(props, str(p))
        self.layers = [LayerOutput(e["name"], e["type"], tuple(e["tops"])) for e in body["layers"]]
        self.input_name = model.graph.input[0].name
        #: A net that mixes images keeps its declared batch: run that many images per call (decoder.runtime).
        self.fixed_batch: int | None = body.get("fixed_batch")
        # Every Caffe blob is float32; an output needs no shape, so no shape inference and no copy of
        # the model (each costs seconds on a 100 MB net): the outputs are appended, serialized, removed.
        produced = {value for node in model.graph.node for value in node.output}
        existing = {o.name for o in model.graph.output}
        original_outputs = len(model.graph.output)
        for layer in self.layers:
            for top in layer.tops:
                if top not in existing and top in produced:
                    model.graph.output.append(helper.make_tensor_value_info(top, TensorProto.FLOAT, None))
                    existing.add(top)
        try:
            serialized = model.SerializeToString()
        finally:
            del model.graph.output[original_outputs:]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(serialized, options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, blob: np.ndarray) -> dict[str, np.ndarray]:
        """All exposed values (every layer top and the graph outputs) for a preprocessed batch."""
        feeds = {self.input_name: np.ascontiguousarray(blob, np.float32)}
        if self.fixed_batch is None:
            values: list[Any] = self.session.run(None, feeds)
        else:
            from decoder.runtime import run_fixed_batch

            values = run_fixed_batch(lambda chunk: self.session.run(None, chunk), feeds, self.fixed_batch)
        return dict(zip(self.output_names, values, strict=True))

    def run_layers(self, blob: np.ndarray) -> dict[str, list[np.ndarray]]:
        """Each Caffe layer's top blobs, by layer name, in network order."""
        values = self.run(blob)
        return {layer.name: [values[t] for t in layer.tops if t in values] for layer in self.layers}
