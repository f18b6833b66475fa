"""`decode attach`: give any ONNX image classifier the metadata `decode` needs.

A model exported by another tool (or converted from Caffe some other way) carries no
preprocessing and no labels. Rather than asking users to re-type them on every run, they
are written into the file once, in exactly the form `decode convert` writes, so the
result behaves like one of ours: `decode img.png --model it.onnx` just works.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx

from decoder.caffe_io import read_binaryproto
from decoder.conversion import score_output_of, write_model_atomically
from decoder.errors import DecoderError
from decoder.spec import GRAPH_KEY, PreprocessSpec

PathLike = str | os.PathLike[str]


def _read_mean(path: Path, channels: int) -> np.ndarray:
    """A mean image or pixel from a .binaryproto or .npy, as (C, H, W) or (C,)."""
    if path.suffix.lower() == ".npy":
        try:
            mean = np.load(path, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError) as exc:
            raise DecoderError(f"not a readable .npy array ({exc})", path) from None
    else:
        mean = read_binaryproto(path)
    mean = mean.reshape(mean.shape[-3:]) if mean.ndim == 4 and mean.shape[0] == 1 else mean
    if mean.ndim not in (1, 3) or mean.shape[0] != channels:
        raise DecoderError(f"mean of shape {list(mean.shape)} does not fit a {channels}-channel input", path)
    return mean


def attach(
    model_path: PathLike,
    output: PathLike,
    *,
    mean: PathLike | None = None,
    mean_values: tuple[float, ...] = (),
    labels: tuple[str, ...] = (),
    resize_mode: str = "squash",
    channel_order: str = "BGR",
    scale: float = 1.0,
    score_output: str | None = None,
) -> PreprocessSpec:
    """Write ``model_path`` with decoder metadata to ``output``; returns the spec it carries."""
    from decoder.intermediates import load_onnx

    model = load_onnx(model_path)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise DecoderError(f"has {len(inputs)} inputs; `decode attach` handles one image input", model_path)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or None in dims[1:]:
        raise DecoderError(f"input {inputs[0].name!r} is not NCHW with a fixed C, H, W (shape {dims})", model_path)
    _, channels, height, width = (int(d) if d else 0 for d in dims)

    mean_array: np.ndarray | None = None
    mean_kind = "none"
    if mean is not None and mean_values:
        raise DecoderError("give a mean file or mean values, not both")
    if mean is not None:
        mean_array = _read_mean(Path(mean), channels)
        if mean_array.ndim == 3 and mean_array.shape[1:] != (height, width):
            from decoder.preprocess import resize_mean

            mean_array = resize_mean(mean_array, height, width, path=Path(mean))
        mean_kind = "image" if mean_array.ndim == 3 else "pixel"
    elif mean_values:
        values = list(mean_values) * (channels if len(mean_values) == 1 else 1)
        if len(values) != channels:
            raise DecoderError(f"{len(mean_values)} mean values for a {channels}-channel input")
        mean_array, mean_kind = np.asarray(values, np.float32), "pixel"

    outputs = [o.name for o in model.graph.output]
    score = score_output or score_output_of(outputs)
    if score not in outputs:
        raise DecoderError(f"has no output {score!r}; its outputs are {', '.join(outputs)}", model_path)
    producer = next((n for n in model.graph.node if score in n.output), None)
    shape = [d.dim_value for d in next(o for o in model.graph.output if o.name == score).type.tensor_type.shape.dim]
    classes = int(np.prod(shape[1:])) if len(shape) >= 2 and all(shape[1:]) else None
    if labels and classes is not None and len(labels) != classes:
        raise DecoderError(f"{len(labels)} labels for {classes} classes in output {score!r}")
    spec = PreprocessSpec(
        channels=channels,
        height=height,
        width=width,
        input_name=inputs[0].name,
        resize_mode=resize_mode,  # type: ignore[arg-type]
        channel_order=channel_order,  # type: ignore[arg-type]
        mean_kind=mean_kind,  # type: ignore[arg-type]
        mean=mean_array,
        scale=scale,
        labels=labels,
        sources={"origin": Path(model_path).name},
    )
    import json

    graph = {
        "outputs": outputs,
        "score_output": score,
        "score_is_softmax": producer is not None and producer.op_type == "Softmax",
        "layers": [],
        "caffe_net": "",
    }
    props = {p.key: p.value for p in model.metadata_props} | spec.to_metadata() | {GRAPH_KEY: json.dumps(graph)}
    onnx.helper.set_model_props(model, props)
    write_model_atomically(model, Path(output))
    return spec
