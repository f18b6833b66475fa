"""What a model needs to be fed, and what its outputs mean: data that travels inside the .onnx.

A :class:`PreprocessSpec` is written into the ONNX file's metadata at conversion time
and read back by :class:`decoder.runtime.Model`, so a user holding only the .onnx file
gets exactly DIGITS's preprocessing and labels. The keys are documented in the README.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import numbers
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

from decoder.errors import DecoderError

ResizeMode = Literal["squash", "crop", "fill", "half_crop"]
MeanKind = Literal["image", "pixel", "none"]
ChannelOrder = Literal["BGR", "RGB"]

RESIZE_MODES: tuple[str, ...] = ("squash", "crop", "fill", "half_crop")
MEAN_KINDS: tuple[str, ...] = ("image", "pixel", "none")
CHANNEL_ORDERS: tuple[str, ...] = ("BGR", "RGB")

#: Largest input side we accept from metadata: a forged .onnx must not make us allocate
#: a (C, 10**9, 10**9) blob per image. Real classifier inputs are a few hundred pixels.
MAX_SIDE = 1 << 14

SPEC_KEY = "decoder.spec"
MEAN_KEY = "decoder.mean"
LABELS_KEY = "decoder.labels"
GRAPH_KEY = "decoder.graph"
SPEC_VERSION = 1

#: The settings whose origin :attr:`PreprocessSpec.provenance` records.
PROVENANCE_KEYS: tuple[str, ...] = (
    "input_shape",
    "channel_order",
    "mean",
    "scale",
    "resize_mode",
    "labels",
    "score_output",
    "dataset_size",
)
#: A provenance phrase starting with this marks a guess, not something a file or option said.
ASSUMED_PREFIX = "assumed"


@dataclass(frozen=True)
class PreprocessSpec:
    """How DIGITS turned an image file into the network's input blob.

    ``mean`` is in the network's channel order: shape (C, H, W) at the input size for
    ``mean_kind == "image"``, shape (C,) for ``"pixel"``, ``None`` for ``"none"``. The
    blob is ``(pixels - mean) * scale``; ``scale`` is 1 for DIGITS models (DIGITS puts
    any scaling inside the net).

    ``dataset_height`` x ``dataset_width`` is the size of the DIGITS dataset's images when
    it differs from the input (models trained with ``crop_size``: a 256x256 dataset, a
    227x227 input). DIGITS inference then resizes in two stages: with PIL to the dataset
    size (``resize_mode``), then ``caffe.io.resize_image`` squashes that to the input. Both
    ``None`` (the default, and every spec written before these fields existed) means one
    resize straight to the input size.
    """

    channels: int
    height: int
    width: int
    input_name: str = "data"
    resize_mode: ResizeMode = "squash"
    channel_order: ChannelOrder = "BGR"
    mean_kind: MeanKind = "none"
    mean: np.ndarray | None = field(default=None, compare=False, repr=False)
    scale: float = 1.0
    labels: tuple[str, ...] = ()
    seed: int = 0
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    dataset_height: int | None = None
    dataset_width: int | None = None
    provenance: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if (self.dataset_height is None) != (self.dataset_width is None):
            raise DecoderError("the dataset size needs both dataset_height and dataset_width, or neither")
        sized = ("dataset_height", "dataset_width") if self.dataset_height is not None else ()
        for name in ("channels", "height", "width", "seed", *sized):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise DecoderError(f"{name} must be an integer, not {value!r}")
        if self.channels not in (1, 3):
            raise DecoderError(f"the network input has {self.channels} channels; only 1 or 3 are images")
        if not (0 < self.height <= MAX_SIDE and 0 < self.width <= MAX_SIDE):
            raise DecoderError(f"input size {self.width}x{self.height} is not 1..{MAX_SIDE} pixels a side")
        dataset_height, dataset_width = self.dataset_height, self.dataset_width
        if (
            dataset_height is not None
            and dataset_width is not None
            and not (0 < dataset_height <= MAX_SIDE and 0 < dataset_width <= MAX_SIDE)
        ):
            raise DecoderError(
                f"dataset size {self.dataset_width}x{self.dataset_height} is not 1..{MAX_SIDE} pixels a side"
            )
        if self.channel_order not in CHANNEL_ORDERS:
            raise DecoderError(f"unknown channel order {self.channel_order!r}; expected BGR or RGB")
        if not isinstance(self.input_name, str):
            raise DecoderError(f"input name must be a string, not {self.input_name!r}")
        if not isinstance(self.scale, numbers.Real) or isinstance(self.scale, bool) or not math.isfinite(self.scale):
            raise DecoderError(f"scale must be a finite number, not {self.scale!r}")
        if not all(isinstance(label, str) for label in self.labels):
            raise DecoderError("labels must be strings")
        if not isinstance(self.provenance, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in self.provenance.items()
        ):
            raise DecoderError("provenance must map setting names to strings")
        if self.resize_mode not in RESIZE_MODES:
            raise DecoderError(f"unknown resize mode {self.resize_mode!r}; expected one of {', '.join(RESIZE_MODES)}")
        if self.mean_kind not in MEAN_KINDS:
            raise DecoderError(f"unknown mean kind {self.mean_kind!r}; expected one of {', '.join(MEAN_KINDS)}")
        expected = {"image": (self.channels, self.height, self.width), "pixel": (self.channels,), "none": None}
        shape = None if self.mean is None else tuple(self.mean.shape)
        if shape != expected[self.mean_kind]:
            raise DecoderError(
                f"mean of shape {shape} does not fit mean kind {self.mean_kind!r} (expected {expected[self.mean_kind]})"
            )

    @property
    def dataset_size(self) -> tuple[int, int] | None:
        """(height, width) DIGITS resized to before the net's own squash; None when it is the input size."""
        if self.dataset_height is None or self.dataset_width is None:
            return None
        size = (self.dataset_height, self.dataset_width)
        return None if size == (self.height, self.width) else size

    def assumed(self) -> dict[str, str]:
        """The settings nobody stated (provenance starting with "assumed"): guesses worth a warning."""
        return {key: value for key, value in self.provenance.items() if value.startswith(ASSUMED_PREFIX)}

    def with_changes(self, **changes: Any) -> PreprocessSpec:
        """A copy with some fields replaced (``dataclasses.replace`` with validation)."""
        return replace(self, **changes)

    def to_metadata(self) -> dict[str, str]:
        """The ONNX ``metadata_props`` entries that carry this spec."""
        body = {k: v for k, v in asdict(self).items() if k not in ("mean", "labels")}
        if self.dataset_height is None:
            # No dataset size: the same entry as before these fields existed, readable by older versions.
            del body["dataset_height"], body["dataset_width"]
        if not self.provenance:
            del body["provenance"]  # nothing recorded: the entry older versions wrote
        body["version"] = SPEC_VERSION
        body["mean_shape"] = None if self.mean is None else list(self.mean.shape)
        props = {SPEC_KEY: json.dumps(body, sort_keys=True), LABELS_KEY: json.dumps(list(self.labels))}
        if self.mean is not None:
            props[MEAN_KEY] = base64.b64encode(np.ascontiguousarray(self.mean, dtype="<f4").tobytes()).decode("ascii")
        return props

    @classmethod
    def from_metadata(cls, props: dict[str, str], path: str | None = None) -> PreprocessSpec:
        """Rebuild the spec written by :meth:`to_metadata`; explain what is missing."""
        if SPEC_KEY not in props:
            raise DecoderError(_missing_spec_message(props), path)
        try:
            body = json.loads(props[SPEC_KEY])
            labels = json.loads(props.get(LABELS_KEY, "[]"))
            if not isinstance(body, dict):
                raise ValueError(f"{SPEC_KEY} holds a JSON {type(body).__name__}, not an object")
            if not isinstance(labels, list):
                raise ValueError(f"{LABELS_KEY} holds a JSON {type(labels).__name__}, not a list")
            mean_shape = body.pop("mean_shape")
            body.pop("version", None)
            mean = None
            if mean_shape is not None:
                if not (isinstance(mean_shape, list) and all(isinstance(d, int) and d >= 0 for d in mean_shape)):
                    raise ValueError(f"mean_shape {mean_shape!r} is not a list of sizes")
                raw = base64.b64decode(props[MEAN_KEY], validate=True)
                mean = np.frombuffer(raw, dtype="<f4").reshape(mean_shape).astype(np.float32)
            return cls(**body, mean=mean, labels=tuple(labels))
        except DecoderError as exc:
            raise DecoderError(f"corrupt decoder metadata in the .onnx file: {exc.message}", path) from None
        except (KeyError, TypeError, ValueError, binascii.Error, RecursionError) as exc:
            raise DecoderError(f"corrupt decoder metadata in the .onnx file ({exc})", path) from None


def _missing_spec_message(props: dict[str, str]) -> str:
    """What a .onnx without ``decoder.spec`` lacks, and the ways to supply it."""
    if GRAPH_KEY in props:
        return (
            f"this .onnx was written by `decode convert` but carries no image preprocessing ({SPEC_KEY}): "
            "the net's input is not a 1- or 3-channel NCHW image; feed it ready-made blobs with Model.run"
        )
    return (
        f"this .onnx has no decoder preprocessing metadata ({SPEC_KEY}), so the input size, channels, resize "
        "mode, mean and labels DIGITS used are unknown (it was not written by `decode convert`); convert the "
        "original Caffe/DIGITS "
        "files with `decode convert`, write them into this file once with `decode attach` "
        "(see `decode attach --help`), or from Python give them yourself: "
        "Model.load(path, spec=PreprocessSpec(channels=..., height=..., width=..., mean_kind=..., mean=...))"
    )


def read_graph_metadata(props: dict[str, str], path: str | None = None) -> dict[str, Any]:
    """The ``decoder.graph`` entry of a .onnx, checked: every reader can trust its shape.

    Written by :func:`decoder.conversion.graph_metadata`: ``outputs`` (list of blob names),
    ``score_output`` (str), ``score_is_softmax`` (bool), ``layers`` (list of objects with
    ``name``, ``type``, ``tops`` and optionally ``nodes``), ``caffe_net`` (str), and since
    heads were told apart ``kind`` ("classifier" or "other"), ``kind_reason`` (str) and
    ``fixed_batch`` (null, or the batch every call must have). A forged or
    damaged entry is a one-line DecoderError naming ``path``, never a KeyError/TypeError.
    Raises the "not written by `decode convert`" error when the entry is absent.
    """
    if GRAPH_KEY not in props:
        raise DecoderError(f"has no decoder layer map ({GRAPH_KEY}; not written by `decode convert`)", path)

    def strings(value: object) -> bool:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)

    try:
        body = json.loads(props[GRAPH_KEY])
    except (ValueError, RecursionError) as exc:
        raise DecoderError(f"corrupt decoder metadata in the .onnx file ({GRAPH_KEY}: {exc})", path) from None
    problem = ""
    if not isinstance(body, dict):
        problem = f"a JSON {type(body).__name__}, not an object"
    elif not strings(body.get("outputs")) or not isinstance(body.get("score_output"), str):
        problem = "outputs / score_output missing or not names"
    elif not isinstance(body.get("score_is_softmax", False), bool):
        problem = "score_is_softmax is not true/false"
    elif body.get("kind", "classifier") not in ("classifier", "other") or not isinstance(
        body.get("kind_reason", ""), str
    ):
        problem = "kind is not 'classifier' or 'other'"
    elif body.get("fixed_batch") is not None and not (
        isinstance(body["fixed_batch"], int) and not isinstance(body["fixed_batch"], bool) and body["fixed_batch"] > 0
    ):
        problem = "fixed_batch is not a positive integer"
    elif not isinstance(body.get("layers"), list):
        problem = "layers missing or not a list"
    else:
        for layer in body["layers"]:
            if not (
                isinstance(layer, dict)
                and isinstance(layer.get("name"), str)
                and isinstance(layer.get("type"), str)
                and strings(layer.get("tops"))
                and strings(layer.get("nodes", []))
            ):
                problem = f"layer entry {str(layer)[:60]} lacks name/type/tops"
                break
    if problem:
        raise DecoderError(f"corrupt decoder metadata in the .onnx file ({GRAPH_KEY}: {problem})", path)
    return body
