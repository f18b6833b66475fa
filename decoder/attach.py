"""`decode attach`: give any ONNX image classifier the metadata `decode` needs, or edit it.

A model exported by another tool (or converted from Caffe some other way) carries no
preprocessing and no labels. Rather than asking users to re-type them on every run, they
are written into the file once, in exactly the form `decode convert` writes, so the
result behaves like one of ours: `decode img.png --model it.onnx` just works.

On a file that already carries decoder metadata, attach EDITS: every setting not passed
is kept (mean, scale, channel order, labels, resize mode, dataset size, the layer table,
provenance), so `attach M -o M2 --labels labels.txt` only adds labels. Options are parsed
by the same functions as `decode convert`'s, so the same option gives the same numbers.
A file without ``decoder.cost`` gets it, as conversion writes it, so the runtime sizes its
batches and threads by the network (decoder.execution), not by a guess from its input.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from decoder.conversion import (
    float_mean_image,
    mean_from_values,
    mean_pixel_of,
    read_mean_file,
    score_output_of,
    write_model_atomically,
)
from decoder.cost import ModelCost, model_cost
from decoder.errors import DecoderError
from decoder.spec import GRAPH_KEY, MEAN_KEY, SPEC_KEY, PreprocessSpec, read_graph_metadata

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class AttachEdits:
    """The settings the user passed; None / empty = keep what the file carries (or the default)."""

    mean: PathLike | None = None
    mean_values: tuple[float, ...] = ()
    mean_kind: str | None = None
    labels: tuple[str, ...] | None = None
    labels_file: str = ""
    resize_mode: str | None = None
    channel_order: str | None = None
    scale: float | None = None
    score_output: str | None = None


def _image_input(model: onnx.ModelProto, model_path: PathLike) -> tuple[str, int, int, int]:
    """(name, C, H, W) of the model's one NCHW image input."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise DecoderError(f"has {len(inputs)} inputs; `decode attach` handles one image input", model_path)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or None in dims[1:]:
        raise DecoderError(f"input {inputs[0].name!r} is not NCHW with a fixed C, H, W (shape {dims})", model_path)
    return inputs[0].name, int(dims[1] or 0), int(dims[2] or 0), int(dims[3] or 0)


def _mean(
    edits: AttachEdits, base: PreprocessSpec, channels: int, height: int, width: int
) -> tuple[str, np.ndarray | None, str] | None:
    """(kind, mean, provenance) from the options, or None to keep the file's."""
    if edits.mean is not None and edits.mean_values:
        raise DecoderError("give --mean FILE or --mean-values, not both")
    if edits.mean_values:
        if edits.mean_kind not in (None, "pixel"):
            raise DecoderError(f"--mean-values is a mean pixel; it contradicts --mean-kind {edits.mean_kind}")
        return "pixel", mean_from_values(edits.mean_values, channels), "option --mean-values"
    if edits.mean is not None:
        path = Path(edits.mean)
        stored = read_mean_file(path, channels)
        origin = f"option --mean {path.name}"
        if stored.ndim == 1 or edits.mean_kind == "pixel":
            return "pixel", stored if stored.ndim == 1 else mean_pixel_of(stored), origin
        if edits.mean_kind == "none":
            return "none", None, "option --mean-kind none"
        return "image", float_mean_image(stored, height, width, path)[0], origin
    if edits.mean_kind == "none":  # also on a file without a mean: it turns the guess into a statement
        return "none", None, "option --mean-kind none"
    if edits.mean_kind is None or edits.mean_kind == base.mean_kind:
        return None
    if edits.mean_kind == "pixel" and base.mean_kind == "image" and base.mean is not None:
        return "pixel", mean_pixel_of(base.mean), "option --mean-kind pixel (the average of the file's mean image)"
    raise DecoderError(f"--mean-kind {edits.mean_kind} needs the mean itself: give --mean FILE or --mean-values")


def _base_spec(props: dict[str, str], model_path: PathLike, name: str, shape: tuple[int, int, int]) -> PreprocessSpec:
    """The spec the file carries, else the defaults every unstated setting falls back to (marked assumed)."""
    if SPEC_KEY in props:
        return PreprocessSpec.from_metadata(props, str(model_path))
    channels, height, width = shape
    assumed = {
        "mean": "assumed: no mean (none given); give --mean-values or --mean",
        "scale": "assumed: 1 (none given); change with --scale",
        "resize_mode": "assumed: squash (none given); change with --resize-mode",
    }
    if channels == 3:
        assumed["channel_order"] = "assumed: BGR (Caffe's order); change with --channel-order RGB"
    return PreprocessSpec(
        channels=channels,
        height=height,
        width=width,
        input_name=name,
        sources={"origin": Path(model_path).name},
        provenance={"input_shape": f"{Path(model_path).name} graph input", **assumed},
    )


def attach(model_path: PathLike, output: PathLike, edits: AttachEdits | None = None) -> tuple[PreprocessSpec, str]:
    """Write ``model_path`` with decoder metadata to ``output``; returns (the spec it carries, score output).

    Settings in ``edits`` replace the file's; all others are kept as they are.
    """
    from decoder.intermediates import load_onnx

    edits = edits or AttachEdits()
    model = load_onnx(model_path)
    name, channels, height, width = _image_input(model, model_path)
    props = {p.key: p.value for p in model.metadata_props}
    base = _base_spec(props, model_path, name, (channels, height, width))
    if (base.channels, base.height, base.width) != (channels, height, width):
        raise DecoderError(
            f"its metadata says input {base.channels}x{base.height}x{base.width} but the graph's is "
            f"{channels}x{height}x{width}",
            model_path,
        )
    provenance = dict(base.provenance)
    changes: dict[str, Any] = {}
    mean = _mean(edits, base, channels, height, width)
    if mean is not None:
        changes["mean_kind"], changes["mean"], provenance["mean"] = mean
    for key, value in (("scale", edits.scale), ("resize_mode", edits.resize_mode)):
        if value is not None:
            changes[key] = value
            provenance[key] = f"option --{key.replace('_', '-')}"
    if edits.channel_order is not None:
        changes["channel_order"] = edits.channel_order.upper()
        provenance["channel_order"] = "option --channel-order"

    outputs = [o.name for o in model.graph.output]
    graph = read_graph_metadata(props, str(model_path)) if GRAPH_KEY in props else None
    score = edits.score_output or (graph["score_output"] if graph else score_output_of(outputs))
    if score not in outputs:
        raise DecoderError(f"has no output {score!r}; its outputs are {', '.join(outputs)}", model_path)
    if edits.score_output is not None or "score_output" not in provenance:
        provenance["score_output"] = "option --score-output" if edits.score_output else "last output in sorted order"
    shape = [d.dim_value for d in next(o for o in model.graph.output if o.name == score).type.tensor_type.shape.dim]
    classes = int(np.prod(shape[1:])) if len(shape) >= 2 and all(shape[1:]) else None
    labels = base.labels if edits.labels is None else edits.labels
    if edits.labels is not None:
        changes["labels"] = edits.labels
        provenance["labels"] = f"{edits.labels_file} (option --labels)" if edits.labels_file else "option --labels"
    if labels and classes is not None and len(labels) != classes:
        raise DecoderError(f"{len(labels)} labels for {classes} classes in output {score!r}")
    spec = base.with_changes(**changes, provenance=provenance)

    producer = next((n for n in model.graph.node if score in n.output), None)
    if graph is None:
        graph = {"outputs": outputs, "layers": [], "caffe_net": ""}
    if edits.score_output is not None or "score_is_softmax" not in graph:
        graph["score_is_softmax"] = producer is not None and producer.op_type == "Softmax"
    if score != graph.get("score_output"):  # what the old score blob was (classifier or not) no longer holds:
        graph.pop("kind", None)  # the runtime works it out again from the new one's shape and layer
        graph.pop("kind_reason", None)
    graph["score_output"] = score
    new_props = props | spec.to_metadata() | {GRAPH_KEY: json.dumps(graph)}
    if ModelCost.from_metadata(props) is None and (cost := _cost_without_weights(model)) is not None:
        new_props |= cost.to_metadata()
    if spec.mean is None:
        new_props.pop(MEAN_KEY, None)
    onnx.helper.set_model_props(model, new_props)
    write_model_atomically(model, Path(output))
    return spec, score


def _cost_without_weights(model: onnx.ModelProto) -> ModelCost | None:
    """:func:`decoder.cost.model_cost` of ``model``, its weights' bytes set aside meanwhile.

    Shape inference copies the whole model; without the weights the copy is a few KB even
    for VGG-16. None when the graph defeats shape inference: the runtime then judges the
    model by its input, as before.
    """
    set_aside = {}
    for tensor in model.graph.initializer:
        if len(tensor.raw_data) > 1024:
            set_aside[tensor.name] = tensor.raw_data
            tensor.ClearField("raw_data")
    try:
        return model_cost(model)
    except Exception:  # onnx raises its own InferenceError / ValidationError types, and more
        return None
    finally:
        for tensor in model.graph.initializer:
            if tensor.name in set_aside:
                tensor.raw_data = set_aside[tensor.name]
