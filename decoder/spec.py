"""What a model needs to be fed, and what its outputs mean: data that travels inside the .onnx.

A :class:`PreprocessSpec` is written into the ONNX file's metadata at conversion time
and read back by :class:`decoder.runtime.Model`, so a user holding only the .onnx file
gets exactly DIGITS's preprocessing and labels. The keys are documented in the README.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

from decoder.errors import DecoderError

ResizeMode = Literal["squash", "crop", "fill", "half_crop"]
MeanKind = Literal["image", "pixel", "none"]
ChannelOrder = Literal["BGR", "RGB"]

RESIZE_MODES: tuple[str, ...] = ("squash", "crop", "fill", "half_crop")
MEAN_KINDS: tuple[str, ...] = ("image", "pixel", "none")

SPEC_KEY = "decoder.spec"
MEAN_KEY = "decoder.mean"
LABELS_KEY = "decoder.labels"
GRAPH_KEY = "decoder.graph"
SPEC_VERSION = 1


@dataclass(frozen=True)
class PreprocessSpec:
    """How DIGITS turned an image file into the network's input blob.

    ``mean`` is in the network's channel order: shape (C, H, W) at the input size for
    ``mean_kind == "image"``, shape (C,) for ``"pixel"``, ``None`` for ``"none"``. The
    blob is ``(pixels - mean) * scale``; ``scale`` is 1 for DIGITS models (DIGITS puts
    any scaling inside the net).
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

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise DecoderError(f"the network input has {self.channels} channels; only 1 or 3 are images")
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

    def with_changes(self, **changes: Any) -> PreprocessSpec:
        """A copy with some fields replaced (``dataclasses.replace`` with validation)."""
        return replace(self, **changes)

    def to_metadata(self) -> dict[str, str]:
        """The ONNX ``metadata_props`` entries that carry this spec."""
        body = {k: v for k, v in asdict(self).items() if k not in ("mean", "labels")}
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
            raise DecoderError(
                "this .onnx has no decoder preprocessing metadata (it was not written by `decode convert`); "
                "convert the Caffe files with `decode convert`, or pass the preprocessing explicitly "
                "(--channels/--size/--mean-kind ... see `decode --help`)",
                path,
            )
        try:
            body = json.loads(props[SPEC_KEY])
            labels = tuple(json.loads(props.get(LABELS_KEY, "[]")))
            mean_shape = body.pop("mean_shape")
            body.pop("version", None)
            mean = None
            if mean_shape is not None:
                raw = base64.b64decode(props[MEAN_KEY])
                mean = np.frombuffer(raw, dtype="<f4").reshape(mean_shape).astype(np.float32)
            return cls(**body, mean=mean, labels=labels)
        except DecoderError as exc:
            raise DecoderError(exc.message, path) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise DecoderError(f"corrupt decoder metadata in the .onnx file ({exc})", path) from None
