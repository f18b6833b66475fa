"""Caffe/DIGITS files -> one self-describing .onnx: the graph, its preprocessing, its labels.

This is where DIGITS's settings are worked out from the files a user holds (FACTS.md
section 2): the input size and channels from the deploy net, ``use_mean`` from
train_val.prototxt's data layer (mean_file -> image, mean_value -> pixel), the resize
mode from info.json, the dataset size DIGITS resized to first for crop_size models (info.json
"image dimensions", else the mean image's size), the labels from labels.txt, and which
output blob holds the scores (Caffe lists outputs in sorted name order and DIGITS reads the
last one; a net ending in ArgMax is read at ArgMax's input, since ArgMax outputs class
indices), and whether that blob is one score vector per image (a classifier) at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from decoder.caffe_io import CaffeNet, load_net, read_binaryproto
from decoder.converter import DEFAULT_OPSET, ConvertedGraph, convert_net
from decoder.cost import model_cost
from decoder.errors import DecoderError
from decoder.heads import CLASSIFIER, head_kind, per_image_shape
from decoder.job import job_metadata
from decoder.onnx_writer import write_onnx
from decoder.sources import ModelSources, read_labels, read_train_transform
from decoder.spec import GRAPH_KEY, MAX_SIDE, RESIZE_MODES, PreprocessSpec


@dataclass
class ConversionReport:
    """What `decode convert` did, for the CLI summary and for tests."""

    output: Path
    spec: PreprocessSpec | None
    inputs: list[str]
    outputs: list[str]
    score_output: str
    layer_count: int
    skipped_layers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: "classifier" (one score vector per image) or "other" (detector, maps, regression...).
    kind: str = CLASSIFIER
    #: Why the model is not a classifier ("" for a classifier).
    kind_reason: str = ""
    #: How the score blob was chosen, when not simply the last output (e.g. ArgMax's input).
    score_note: str = ""
    #: The batch every call must have, when a layer mixes images (None: dynamic).
    fixed_batch: int | None = None
    #: Why the batch is fixed, or how literal batch sizes were read.
    batch_notes: list[str] = field(default_factory=list)


def score_output_of(outputs: list[str]) -> str:
    """The blob DIGITS reads as scores: pycaffe's ``net.outputs[-1]``.

    Caffe's Net::Init collects output blobs from a ``std::set<string>``, so
    ``net.outputs`` is in sorted name order (not prototxt order).
    """
    return sorted(outputs)[-1]


@dataclass(frozen=True)
class ScoreChoice:
    """The blob a prediction reads, and what it is."""

    output: str  # the graph output holding the scores
    is_softmax: bool
    kind: str  # "classifier" or "other"
    kind_reason: str  # why not a classifier
    note: str  # how it was chosen, when that needs saying
    provenance: str = ""  # where the choice came from, for PreprocessSpec.provenance["score_output"]


def choose_score_output(graph: ConvertedGraph, requested: str | None = None) -> ScoreChoice:
    """The score blob: ``requested`` (``--score-output``), else DIGITS's last output in sorted order.

    A blob written by ArgMax holds class indices as floats (FACTS.md section 7), never scores:
    the scores are ArgMax's input (the probabilities), which is made a graph output when it is
    not one. Then the blob's per-image shape tells whether the model is a classifier at all.
    Adds outputs to ``graph`` (its model and its ``outputs`` list) as needed.
    """
    producer = {top: name for name, tops in graph.layer_tops.items() for top in tops}
    if requested is not None:
        if requested not in producer:
            raise DecoderError(
                f"--score-output {requested!r} is not a blob of the net (its outputs: {', '.join(graph.outputs)})"
            )
        blob = requested
        provenance = "option --score-output"
    elif len(graph.outputs) == 1:
        blob, provenance = graph.outputs[0], "the net's only output"
    else:
        blob = score_output_of(graph.outputs)
        provenance = "assumed: the last output in sorted name order, the one DIGITS reads; change with --score-output"
    note = f"scores from {blob!r} (--score-output)" if requested is not None else ""
    while graph.layer_types.get(producer.get(blob, "")) == "ArgMax":
        layer = producer[blob]
        source = graph.layer_bottoms[layer][0]
        note = (
            f"scores from {source!r}, the input of ArgMax layer {layer!r}: its output {blob!r} holds class "
            "indices, not scores"
        )
        blob = source
        provenance = f"the input of ArgMax layer {layer!r} (ArgMax outputs class indices, not scores)"
    if blob not in graph.outputs:
        graph.model.graph.output.append(
            onnx.helper.make_tensor_value_info(blob, onnx.TensorProto.FLOAT, list(graph.shapes[blob]))
        )
        graph.outputs.append(blob)
    producer_type = graph.layer_types.get(producer.get(blob, ""), "")
    kind, reason = head_kind(per_image_shape(graph.shapes[blob], graph.fixed_batch), producer_type)
    return ScoreChoice(blob, producer_type == "Softmax", kind, reason, note, provenance)


def _mean_blob(path: Path, channels: int) -> np.ndarray:
    """mean.binaryproto as stored: float32 (C, H, W) at the dataset size, BGR for colour."""
    blob = read_binaryproto(path)
    squeezed = blob.reshape(blob.shape[-3:]) if blob.ndim >= 3 and blob.size == np.prod(blob.shape[-3:]) else blob
    if squeezed.ndim != 3:
        raise DecoderError(f"mean blob has shape {list(blob.shape)}, expected (1, C, H, W)", path)
    if squeezed.shape[0] != channels:
        raise DecoderError(f"mean image has {squeezed.shape[0]} channel(s) but the network input has {channels}", path)
    return squeezed


def _mean_image(blob: np.ndarray, path: Path, height: int, width: int) -> np.ndarray:
    """DIGITS's ``get_mean_image(mean_file, resize=True)``: the mean subtracted from the INPUT.

    It always goes through uint8 (truncating) and PIL bilinear when the size differs
    (crop_size models: the 256x256 dataset mean is RESIZED, not cropped, to 227x227);
    resize_mean reproduces both, also when the size already matches. The transformer then
    gets this input-sized mean, so it never resizes the mean itself.
    """
    from decoder.preprocess import resize_mean

    return resize_mean(blob, height, width, path=path)


def _mean_pixel(blob: np.ndarray) -> np.ndarray:
    """DIGITS's ``get_mean_pixel``: ``get_mean_image(mean_file)`` WITHOUT resize, ``.mean(1).mean(1)``.

    So the per-channel average of the stored (dataset-size, float) mean, in float64, with
    neither the uint8 truncation nor the resize the image mean goes through.
    """
    return blob.astype(np.float64).mean(1).mean(1).astype(np.float32)


def _info_dimensions(sources: ModelSources, channels: int) -> tuple[int, int] | None:
    """info.json's "image dimensions" [H, W, C] (DIGITS's ``get_feature_dims()``) as (H, W), if given."""
    value = sources.info.get("image dimensions")
    if value is None:
        return None
    where = sources.origin or None
    if not (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_SIDE for v in value)
    ):
        raise DecoderError(
            f'info.json "image dimensions" is {str(value)[:60]}, not [height, width, channels] of 1..{MAX_SIDE} pixels',
            where,
        )
    if value[2] != channels:
        raise DecoderError(
            f'info.json "image dimensions" {value} give {value[2]} channel(s) but the network input has {channels}',
            where,
        )
    return value[0], value[1]


def _dataset_size(
    sources: ModelSources,
    crop_size: int,
    blob: np.ndarray | None,
    channels: int,
    height: int,
    width: int,
) -> tuple[tuple[int, int] | None, list[str]]:
    """The size DIGITS resized images to before ``Transformer.preprocess``, when it is not the input's.

    ``digits/tools/inference.py`` resizes every image to the DATASET's H x W
    (``dataset.get_feature_dims()``, written to info.json as "image dimensions"); the
    deploy input is that size unless the model was trained with ``crop_size``, when it is
    crop_size x crop_size and pycaffe squashes the dataset-size image to it. Without
    info.json the mean image tells the dataset size (DIGITS computes it at that size).
    Only crop_size models and DIGITS models get this: for a plain Caffe model nothing says
    an intermediate size existed.
    """
    notes: list[str] = []
    dims = _info_dimensions(sources, channels)
    found = "" if dims is None else 'info.json "image dimensions"'
    if dims is None and blob is None and sources.mean is not None and (crop_size or sources.is_digits):
        try:  # the mean file is not otherwise used (mean kind none), but it still tells the size
            blob = _mean_blob(sources.mean, channels)
        except DecoderError as exc:
            notes.append(f"cannot read the dataset size from the mean file: {exc}")
    if dims is None and blob is not None:
        dims, found = (int(blob.shape[1]), int(blob.shape[2])), "the mean image"
    if dims is None or dims == (height, width) or not (crop_size or sources.is_digits):
        if crop_size and dims is None:
            notes.append(
                f'trained with crop_size {crop_size}, but neither info.json "image dimensions" nor a mean file '
                "gives the dataset size DIGITS resized to first: images are resized straight to the input "
                "(DIGITS's geometry, not all its pixels)"
            )
        elif crop_size:
            notes.append(f"trained with crop_size {crop_size}: images are resized (not centre-cropped) to the input")
        return None, notes
    if crop_size:
        notes.append(
            f"trained with crop_size {crop_size}: following DIGITS inference, images are resized (not "
            f"centre-cropped) to the {dims[1]}x{dims[0]} dataset size (from {found}) with PIL, then squashed "
            f"to the {width}x{height} input with pycaffe's float resize; the mean image is resized to the input"
        )
    else:
        notes.append(
            f"the DIGITS dataset is {dims[1]}x{dims[0]} (from {found}) but the input is {width}x{height}: "
            "images are resized to the dataset size, then to the input, as DIGITS does"
        )
    return dims, notes


def build_spec(
    net: CaffeNet,
    sources: ModelSources,
    num_classes: int | None,
    overrides: dict[str, object] | None = None,
) -> tuple[PreprocessSpec | None, list[str]]:
    """DIGITS's preprocessing for this net, from the files; ``None`` when the input is no image."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    notes: list[str] = []
    first = net.inputs[0]
    if len(first.shape) != 4:
        notes.append(f"input {first.name!r} has shape {list(first.shape)}, not NCHW: no image preprocessing stored")
        return None, notes
    _, channels, height, width = first.shape
    if channels not in (1, 3):
        notes.append(f"input {first.name!r} has {channels} channels, not an image: no image preprocessing stored")
        return None, notes

    transform = read_train_transform(sources.train_val) if sources.train_val else None
    if transform is not None:
        mean_kind = transform.mean_kind
    else:
        # DIGITS's default is use_mean=image; without train_val we cannot see otherwise.
        mean_kind = "image" if sources.mean else "none"
        if sources.mean:
            notes.append("no train_val.prototxt: assuming DIGITS's default, the mean image (override with --mean)")
    mean_kind = str(overrides.get("mean_kind", mean_kind))

    mean: np.ndarray | None = None
    blob: np.ndarray | None = None
    if mean_kind == "image" or (mean_kind == "pixel" and not (transform and transform.mean_values)):
        if sources.mean is None:
            raise DecoderError(
                f"the model subtracts a mean {'image' if mean_kind == 'image' else 'pixel'} but no "
                "mean.binaryproto was given (--mean FILE, or --mean-kind none if there is none)",
                sources.origin or None,
            )
        blob = _mean_blob(sources.mean, channels)
        mean = _mean_image(blob, sources.mean, height, width) if mean_kind == "image" else _mean_pixel(blob)
    elif mean_kind == "pixel":
        assert transform is not None
        values = list(transform.mean_values)
        if len(values) == 1:
            values *= channels
        if len(values) != channels:
            raise DecoderError(
                f"train_val mean_value has {len(values)} values for {channels} channels", sources.train_val
            )
        mean = np.asarray(values, np.float32)

    if sources.is_digits:
        # DIGITS inference ignores transform_param.scale: its nets scale inside (a Power layer).
        scale = 1.0
        if transform is not None and transform.scale != 1.0:
            notes.append(f"train_val scales by {transform.scale:g}; DIGITS inference does not (the net scales inside)")
    else:
        scale = transform.scale if transform is not None else 1.0
    scale = float(overrides.get("scale", scale))  # type: ignore[arg-type]

    resize_mode = str(sources.info.get("image resize mode", "squash")).lower()
    if resize_mode not in RESIZE_MODES:
        raise DecoderError(f"info.json gives an unknown image resize mode {resize_mode!r}", sources.origin or None)
    resize_mode = str(overrides.get("resize_mode", resize_mode))
    crop_size = transform.crop_size if transform is not None else 0
    dataset, size_notes = _dataset_size(sources, crop_size, blob, channels, height, width)
    notes.extend(size_notes)

    labels: tuple[str, ...] = ()
    if sources.labels is not None:
        labels = read_labels(sources.labels)
        if num_classes is not None and len(labels) != num_classes:
            raise DecoderError(
                f"has {len(labels)} labels but the network's score output has {num_classes} classes; "
                "refusing to attach labels that would name the wrong classes (give the right --labels)",
                sources.labels,
            )
    source_names = {
        key: str(getattr(sources, key).name)
        for key in ("prototxt", "caffemodel", "mean", "labels", "train_val")
        if getattr(sources, key) is not None
    }
    if sources.origin:
        source_names["origin"] = Path(sources.origin).name
    try:
        spec = PreprocessSpec(
            channels=channels,
            height=height,
            width=width,
            input_name=first.name,
            resize_mode=resize_mode,  # type: ignore[arg-type]
            channel_order=str(overrides.get("channel_order", "BGR")),  # type: ignore[arg-type]
            mean_kind=mean_kind,  # type: ignore[arg-type]
            mean=mean,
            scale=scale,
            labels=labels,
            sources=source_names,
            dataset_height=None if dataset is None else dataset[0],
            dataset_width=None if dataset is None else dataset[1],
        )
    except DecoderError as exc:  # e.g. an absurd input size: name the deploy net that declares it
        raise DecoderError(exc.message, exc.path or sources.prototxt) from None
    return spec, notes


def graph_metadata(graph: ConvertedGraph, net: CaffeNet, score: str | ScoreChoice) -> dict[str, str]:
    """Where every Caffe layer's tops are in the graph, which output holds the scores and what they are."""
    producer = {top: name for name, tops in graph.layer_tops.items() for top in tops}
    if isinstance(score, str):
        score_type = graph.layer_types.get(producer.get(score, ""), "")
        kind, reason = head_kind(per_image_shape(graph.shapes.get(score, ()), graph.fixed_batch), score_type)
        score = ScoreChoice(score, score_type == "Softmax", kind, reason, "")
    body = {
        "outputs": graph.outputs,
        "score_output": score.output,
        "score_is_softmax": score.is_softmax,
        "kind": score.kind,
        "kind_reason": score.kind_reason,
        "fixed_batch": graph.fixed_batch,
        "layers": [
            {"name": name, "type": graph.layer_types[name], "tops": tops, "nodes": graph.layer_nodes.get(name, [])}
            for name, tops in graph.layer_tops.items()
        ],
        "caffe_net": net.name,
    }
    return {GRAPH_KEY: json.dumps(body)}


def write_model_atomically(
    model: onnx.ModelProto, output: Path, weights: Mapping[str, np.ndarray] | None = None
) -> Path | None:
    """Write to a temporary file beside ``output``, then rename: never a half-written .onnx.

    ``weights`` hold the data of initializers the model has only by name (see
    :func:`decoder.onnx_writer.write_onnx`, which also moves them to external data past 2 GB:
    the data file's path is returned then).
    """
    return write_onnx(model, Path(output), weights)


def convert(
    sources: ModelSources,
    output: Path,
    opset: int | None = None,
    overrides: dict[str, object] | None = None,
) -> ConversionReport:
    """Convert the Caffe model in ``sources`` to ``output`` (.onnx) with its preprocessing and labels."""
    net = load_net(sources.prototxt, sources.caffemodel)
    flavor = sources.info.get("caffe flavor")
    graph = convert_net(
        net, opset or DEFAULT_OPSET, caffe_flavor=None if flavor is None else str(flavor), detach_weights=True
    )
    requested = (overrides or {}).get("score_output")
    score = choose_score_output(graph, None if requested is None else str(requested))
    image_shape = per_image_shape(graph.shapes[score.output], graph.fixed_batch)
    num_classes = (
        int(np.prod(image_shape)) if score.kind == CLASSIFIER and all(isinstance(d, int) for d in image_shape) else None
    )
    spec, notes = build_spec(net, sources, num_classes, overrides)
    if spec is not None:
        spec = spec.with_changes(provenance={**spec.provenance, "score_output": score.provenance})
    props = graph_metadata(graph, net, score)
    props.update(model_cost(graph.model).to_metadata())  # what the runtime sizes batches and threads by
    if spec is not None:
        props.update(spec.to_metadata())
    props.update(job_metadata(sources.info, sources.origin))  # DIGITS job id and name, for `decode serve`
    onnx.helper.set_model_props(graph.model, props)
    graph.model.doc_string = f"Converted by decoder from {sources.origin or sources.prototxt}"
    data_file = write_model_atomically(graph.model, output, graph.weights)
    if data_file is not None:
        notes.append(f"too big for one .onnx file: the weights are in {data_file.name} (ONNX external data)")
    return ConversionReport(
        output=Path(output),
        spec=spec,
        inputs=[i.name for i in net.inputs],
        outputs=graph.outputs,
        score_output=score.output,
        layer_count=len(graph.layer_tops),
        skipped_layers=graph.skipped,
        notes=notes,
        kind=score.kind,
        kind_reason=score.kind_reason,
        score_note=score.note,
        fixed_batch=graph.fixed_batch,
        batch_notes=graph.batch_couplings if graph.fixed_batch else graph.batch_notes,
    )
