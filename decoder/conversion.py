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
from decoder.sources import LABEL_FILE_NAMES, ModelSources, TrainTransform, read_labels, read_train_transform
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
    if kind != CLASSIFIER and requested is None:  # no label is ever read from it: nothing was guessed
        provenance = "no score blob is read: not a classifier (`decode run` gives every output)"
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


def mean_pixel_of(blob: np.ndarray) -> np.ndarray:
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


def read_mean_file(path: Path, channels: int) -> np.ndarray:
    """A mean image or pixel from a .binaryproto or .npy, as float32 (C, H, W) or (C,).

    Shared by convert and attach, so a given file gives the same numbers in both.
    """
    if path.suffix.lower() == ".npy":
        try:
            mean = np.load(path, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError, TypeError) as exc:
            raise DecoderError(f"not a readable .npy array ({exc})", path) from None
    else:
        mean = read_binaryproto(path)
    mean = mean.reshape(mean.shape[-3:]) if mean.ndim == 4 and mean.shape[0] == 1 else mean
    if mean.ndim not in (1, 3):
        raise DecoderError(f"mean of shape {list(mean.shape)} is neither (C, H, W) nor (C,)", path)
    if mean.shape[0] != channels:
        raise DecoderError(
            f"the mean has {mean.shape[0]} channel(s) (shape {list(mean.shape)}) but the network input has {channels}",
            path,
        )
    if not np.all(np.isfinite(mean)):
        raise DecoderError("the mean holds NaN or infinite values", path)
    return mean


def mean_from_values(values: tuple[float, ...], channels: int) -> np.ndarray:
    """``--mean-values``: one value per input channel (one value for all), float32, exactly as given."""
    expanded = list(values) * (channels if len(values) == 1 else 1)
    if len(expanded) != channels:
        raise DecoderError(f"{len(values)} mean values for a {channels}-channel input (give {channels}, or one)")
    return np.asarray(expanded, np.float32)


def float_mean_image(mean: np.ndarray, height: int, width: int, path: Path) -> tuple[np.ndarray, str]:
    """A plain Caffe model's mean image at the input size, as float32 (Caffe's DataTransformer subtracts floats).

    Same size: the stored values. Otherwise the mean is resized bilinearly in float, which
    approximates Caffe's centre crop for crop_size nets (a note says so).
    """
    if mean.shape[1:] == (height, width):
        return mean.astype(np.float32), ""
    import cv2

    resized = np.stack([cv2.resize(plane, (width, height), interpolation=cv2.INTER_LINEAR) for plane in mean])
    note = (
        f"the mean image {path.name} is {mean.shape[2]}x{mean.shape[1]}, the input {width}x{height}: it was "
        "resized to the input (Caffe subtracted it at the crop position; --mean-kind pixel avoids the difference)"
    )
    return resized.astype(np.float32), note


def _mean_setting(
    net_channels: tuple[int, int, int],
    sources: ModelSources,
    transform: TrainTransform | None,
    transform_name: str,
    overrides: dict[str, object],
    notes: list[str],
) -> tuple[str, np.ndarray | None, np.ndarray | None, str]:
    """(mean kind, mean at the input, stored mean blob or None, provenance) from options, then files."""
    channels, height, width = net_channels
    values = tuple(overrides.get("mean_values", ()))  # type: ignore[arg-type]
    option_kind = overrides.get("mean_kind")
    file_given = "mean" in sources.given and sources.mean is not None
    if values:
        if file_given:
            raise DecoderError("give --mean FILE or --mean-values, not both")
        if option_kind not in (None, "pixel"):
            raise DecoderError(f"--mean-values is a mean pixel; it contradicts --mean-kind {option_kind}")
        return "pixel", mean_from_values(values, channels), None, "option --mean-values"
    if option_kind == "none":
        return "none", None, None, "option --mean-kind none"

    mean_name = sources.mean.name if sources.mean is not None else ""
    if file_given:
        kind, origin = str(option_kind or ""), f"option --mean {mean_name}"
    elif option_kind is not None:
        kind, origin = str(option_kind), f"option --mean-kind {option_kind}"
    elif transform is not None:
        kind = transform.mean_kind
        field_name = {"image": "mean_file", "pixel": "mean_value", "none": "(no mean_file or mean_value)"}[kind]
        origin = f"{transform_name} transform_param {field_name}"
    elif sources.is_digits:
        kind = "image" if sources.mean else "none"
        origin = f"DIGITS: mean image {mean_name} (its default)" if sources.mean else "DIGITS: no mean file"
    elif sources.mean is not None:
        kind = "image"
        origin = (
            f"assumed: mean image {mean_name} subtracted as stored (no train_val.prototxt says how); "
            "change with --mean-kind pixel|none or --mean-values"
        )
    else:
        kind = "none"
        origin = (
            "assumed: no mean (no train_val.prototxt or mean file); give --mean-values or --mean if it had one, "
            "--mean-kind none if not"
        )

    if kind == "none":
        return "none", None, None, origin
    if kind == "pixel" and transform is not None and transform.mean_values and not file_given:
        where = f"{transform_name} transform_param mean_value"
        return "pixel", mean_from_values(transform.mean_values, channels), None, where
    if sources.mean is None:
        written = f": {transform.mean_file}" if transform is not None and transform.mean_file else ""
        raise DecoderError(
            f"the model subtracts a mean {kind} ({origin}{written}) but no mean file was found: give --mean FILE, "
            "--mean-values V1,V2,V3, or --mean-kind none if it had none",
            sources.origin or None,
        )
    stored = read_mean_file(sources.mean, channels)
    if stored.ndim == 1:  # a (C,) .npy is a mean pixel whatever was asked
        if kind == "image" and option_kind == "image":
            raise DecoderError("--mean-kind image, but the mean file holds one value per channel", sources.mean)
        return "pixel", stored, None, origin
    kind = kind or "image"
    if kind == "pixel":
        return "pixel", mean_pixel_of(stored), stored, origin
    if sources.is_digits:
        return "image", _mean_image(stored, sources.mean, height, width), stored, origin
    mean, note = float_mean_image(stored, height, width, sources.mean)
    if note:
        notes.append(note)
    return "image", mean, stored, origin


def build_spec(
    net: CaffeNet,
    sources: ModelSources,
    num_classes: int | None,
    overrides: dict[str, object] | None = None,
) -> tuple[PreprocessSpec | None, list[str]]:
    """The preprocessing for this net, with where each setting came from; ``None`` when the input is no image.

    Options win; then the files (train_val.prototxt's data layer, or the converted
    prototxt's own data layer for train/test nets; info.json); then DIGITS's defaults for
    DIGITS models; then Caffe's defaults, recorded as assumptions (see PreprocessSpec.provenance).
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None and v != ()}
    notes: list[str] = []
    first = net.inputs[0]
    if len(first.shape) != 4:
        notes.append(f"input {first.name!r} has shape {list(first.shape)}, not NCHW: no image preprocessing stored")
        return None, notes
    _, channels, height, width = first.shape
    if channels not in (1, 3):
        notes.append(f"input {first.name!r} has {channels} channels, not an image: no image preprocessing stored")
        return None, notes
    provenance: dict[str, str] = {"input_shape": net.input_source or f"{sources.prototxt.name} input declaration"}

    transform_path = sources.train_val or (sources.prototxt if net.data_layer_type else None)
    transform = read_train_transform(transform_path) if transform_path is not None else None
    transform_name = transform_path.name if transform_path is not None else ""
    mean_kind, mean, blob, provenance["mean"] = _mean_setting(
        (channels, height, width), sources, transform, transform_name, overrides, notes
    )

    if "scale" in overrides:
        scale, provenance["scale"] = float(overrides["scale"]), "option --scale"  # type: ignore[arg-type]
    elif sources.is_digits and not net.data_layer_type:
        # DIGITS inference ignores transform_param.scale: its deploy nets scale inside (a Power layer).
        # (A DIGITS train_val converted itself has no such layer: its data layer's scale applies.)
        scale, provenance["scale"] = 1.0, "DIGITS: 1 (its inference ignores transform_param.scale)"
        if transform is not None and transform.scale != 1.0:
            notes.append(f"train_val scales by {transform.scale:g}; DIGITS inference does not (the net scales inside)")
    elif transform is not None:
        scale, provenance["scale"] = transform.scale, f"{transform_name} transform_param scale"
    else:
        scale = 1.0
        provenance["scale"] = "assumed: 1 (no train_val.prototxt states a scale); change with --scale (e.g. 1/255)"

    data_type = net.data_layer_type or (transform.data_type if transform is not None else "")
    if "channel_order" in overrides:
        channel_order, provenance["channel_order"] = str(overrides["channel_order"]).upper(), "option --channel-order"
    elif channels == 1:
        channel_order, provenance["channel_order"] = "BGR", "grey input (one channel)"
    elif sources.is_digits:
        channel_order, provenance["channel_order"] = "BGR", "DIGITS: BGR (its Caffe backend feeds BGR)"
    elif data_type in ("ImageData", "WindowData"):
        channel_order = "BGR"
        provenance["channel_order"] = f"{transform_name} {data_type} layer (Caffe reads image files with OpenCV: BGR)"
    else:
        channel_order = "BGR"
        provenance["channel_order"] = (
            "assumed: BGR (Caffe's convert_imageset order); change with --channel-order RGB"
            " if it was trained on PIL/skimage/PyTorch arrays"
        )

    info_mode = sources.info.get("image resize mode")
    resize_mode = str(info_mode if info_mode is not None else "squash").lower()
    if resize_mode not in RESIZE_MODES:
        raise DecoderError(f"info.json gives an unknown image resize mode {resize_mode!r}", sources.origin or None)
    if "resize_mode" in overrides:
        resize_mode, provenance["resize_mode"] = str(overrides["resize_mode"]), "option --resize-mode"
    elif info_mode is not None:
        provenance["resize_mode"] = "info.json image resize mode"
    elif sources.is_digits:
        provenance["resize_mode"] = "DIGITS: squash (its default)"
    else:
        provenance["resize_mode"] = "Caffe's tools: squash (resized to the input, aspect not kept); see --resize-mode"

    crop_size = transform.crop_size if transform is not None else 0
    dataset, size_notes = _dataset_size(sources, crop_size, blob, channels, height, width)
    notes.extend(size_notes)
    if dataset is not None:
        found = 'info.json "image dimensions"' if sources.info.get("image dimensions") else "the mean image's size"
        provenance["dataset_size"] = found

    labels: tuple[str, ...] = ()
    if sources.labels is not None:
        labels = read_labels(sources.labels, digits=sources.is_digits)
        if num_classes is not None and len(labels) != num_classes:
            raise DecoderError(
                f"has {len(labels)} labels but the network's score output has {num_classes} classes; "
                "refusing to attach labels that would name the wrong classes (give the right --labels)",
                sources.labels,
            )
        how = "option --labels" if "labels" in sources.given else "found beside the model"
        provenance["labels"] = f"{sources.labels.name} ({how})"
    else:
        provenance["labels"] = f"none found (looked for {', '.join(LABEL_FILE_NAMES[:4])}...); add with --labels"
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
            channel_order=channel_order,  # type: ignore[arg-type]
            mean_kind=mean_kind,  # type: ignore[arg-type]
            mean=mean,
            scale=scale,
            labels=labels,
            sources=source_names,
            dataset_height=None if dataset is None else dataset[0],
            dataset_width=None if dataset is None else dataset[1],
            provenance=provenance,
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


def given_overrides(overrides: dict[str, object] | None) -> list[str]:
    """The :func:`convert` ``overrides`` that were given, as options (``--input-shape``): to refuse them on a .onnx."""
    return [f"--{key.replace('_', '-')}" for key, value in (overrides or {}).items() if value not in (None, ())]


def convert(
    sources: ModelSources,
    output: Path,
    opset: int | None = None,
    overrides: dict[str, object] | None = None,
) -> ConversionReport:
    """Convert the Caffe model in ``sources`` to ``output`` (.onnx) with its preprocessing and labels.

    ``overrides`` holds the user's options (None = not given): ``mean_kind``, ``mean_values``,
    ``scale``, ``channel_order``, ``resize_mode``, ``input_shape`` (C, H, W), ``score_output``.
    """
    overrides = dict(overrides or {})
    input_shape = overrides.get("input_shape")
    net = load_net(sources.prototxt, sources.caffemodel, input_shape=input_shape)  # type: ignore[arg-type]
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
    if net.dropped:
        notes.insert(0, f"training-only layers dropped (deploy net kept): {', '.join(net.dropped)}")
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
