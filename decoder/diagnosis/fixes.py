"""The repair of the user's blob, as an operation and as numpy text.

The repair is both an operation (:meth:`Repair.apply`, used to verify the fix before it
is offered) and numpy text (:meth:`Repair.numpy_code`, what the user copies); the tests
execute the text and check that it computes the same as ``apply``. The model's whole
preprocessing as code is in :mod:`decoder.diagnosis.snippets`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from decoder.diagnosis.blobs import BlobTransform
from decoder.diagnosis.pixels import digits_blob
from decoder.spec import PreprocessSpec


def _number(value: float) -> str:
    """A float as users write it: 255.0, 0.0125, -127.5."""
    text = f"{value:.10g}"
    return text if any(ch in text for ch in ".en") else f"{text}.0"


@dataclass(frozen=True)
class Repair:
    """Turn the user's blob into the model's: undo their transform, then fix the pixels themselves.

    ``invert_pixels`` / ``reverse_channels`` are about the pixels (e.g. white-on-black
    images for a net trained on dark-on-white), beyond what the user's code did to them.
    ``target`` is the preprocessing to produce when it is not the stated one (``spec``):
    the stated spec with some of the user's own settings kept, for when the metadata may
    be the one that is wrong (see :mod:`decoder.diagnosis.provenance`).
    """

    transform: BlobTransform
    spec: PreprocessSpec
    invert_pixels: bool = False
    reverse_channels: bool = False
    target: PreprocessSpec | None = None

    @property
    def goal(self) -> PreprocessSpec:
        """The preprocessing the repaired blob follows."""
        return self.target or self.spec

    @property
    def flips_channels(self) -> bool:
        """Reverse the (stated-order) pixels: a pixel fix, or the target's other channel order, not both."""
        other_order = self.goal.channel_order != self.spec.channel_order
        return self.spec.channels == 3 and self.reverse_channels != other_order

    def apply(self, blob: np.ndarray) -> np.ndarray:
        """The model's blob for the images the user's ``blob`` (N, C, H, W) was made from."""
        pixels = self.transform.pixels_from(np.asarray(blob, dtype=np.float32), self.spec)
        if self.invert_pixels:
            pixels = 255.0 - pixels
        if self.flips_channels:
            pixels = pixels[:, ::-1]
        return digits_blob(np.ascontiguousarray(pixels), self.goal)

    def numpy_code(self) -> str:
        """numpy that maps ``blob`` (your N, C, H, W batch) to ``fixed``, given ``mean`` as DIGITS uses it."""
        t, spec = self.transform, self.spec
        undo: list[str] = []
        if t.layout == "hwc-reshaped":
            shape = f"-1, {spec.height}, {spec.width}, {spec.channels}"
            undo.append(f"{{x}} = {{x}}.reshape({shape}).transpose(0, 3, 1, 2)  # it was HWC data: to CHW")
        elif t.layout == "transposed":
            undo.append("{x} = {x}.transpose(0, 1, 3, 2)  # H and W were swapped")
        if t.swapped:
            undo.append("{x} = {x}[:, ::-1]  # RGB -> BGR")
        lines = [line.format(x="blob") for line in undo] if t.rearranged_last else []
        lines.append(f"pixels = {_unscale_expression(t, spec)}  # back to 0..255 pixels")
        if not t.rearranged_last:
            lines += [line.format(x="pixels") for line in undo]
        if self.invert_pixels:
            lines.append("pixels = 255.0 - pixels  # the training images had the opposite polarity")
        if self.flips_channels:
            why = "the channel order of the training data" if self.reverse_channels else "keep your channel order"
            lines.append(f"pixels = pixels[:, ::-1]  # {why}")
        lines.append(_mean_line(self.goal, spec))
        if self.goal.scale != 1.0:
            lines.append(f"fixed = fixed * {_number(self.goal.scale)}")
        lines.append("fixed = np.ascontiguousarray(fixed, dtype=np.float32)")
        return "\n".join(lines)


def _mean_line(goal: PreprocessSpec, spec: PreprocessSpec) -> str:
    """``fixed = pixels - <the goal's mean>``, naming the model's ``mean`` where it is that."""
    same = goal.mean is spec.mean
    if goal.mean_kind == "image" and same:
        return "fixed = pixels - mean  # the mean image (C, H, W)"
    if goal.mean_kind == "pixel" and same:
        return "fixed = pixels - mean.reshape(-1, 1, 1)  # the mean pixel"
    if goal.mean_kind == "pixel" and spec.mean_kind == "image" and goal.mean is not None:
        pixel = spec.mean.mean(axis=(1, 2)) if spec.mean is not None else None
        if pixel is not None and np.allclose(pixel, goal.mean, atol=1e-4):
            return "fixed = pixels - mean.mean(axis=(1, 2), keepdims=True)  # the mean image's mean pixel"
    if goal.mean_kind == "pixel" and goal.mean is not None:
        values = ", ".join(repr(float(v)) for v in goal.mean)
        return f"fixed = pixels - np.array([{values}], np.float32).reshape(-1, 1, 1)  # mean pixel"
    if goal.mean_kind == "image":
        raise ValueError("a repair's target mean image must be the model's own")
    return "fixed = pixels  # no mean"


def _unscale_expression(t: BlobTransform, spec: PreprocessSpec) -> str:
    """``(blob - c*M - b) / a`` written the way a person would."""
    mean_term = ""
    if t.mean_kind == "image":
        mean_term = "mean"
    elif t.mean_kind == "pixel":
        mean_term = "mean.mean(axis=(1, 2), keepdims=True)" if spec.mean_kind == "image" else "mean.reshape(-1, 1, 1)"
    value = "blob"
    if t.b != 0:
        value = f"(blob - {_number(t.b)})" if t.b > 0 else f"(blob + {_number(-t.b)})"
    same_scale = bool(mean_term) and abs(t.c + t.a) <= 1e-9 * max(abs(t.a), 1e-12)
    if mean_term and t.c != 0 and not same_scale:
        value = f"({value} - ({_number(t.c)}) * {mean_term})"
    value = _divide(value, t.a)
    if same_scale:
        value = f"{value} + {mean_term}"
    return value


def _divide(value: str, a: float) -> str:
    """``value / a``, as a multiplication when 1/a is a round number (x 255.0 rather than / 0.00392)."""
    if a == 1.0:
        return value
    inverse = 1.0 / a
    half = round(inverse * 2) / 2
    if half != 0 and abs(inverse - half) <= 1e-6 * abs(inverse):
        return f"{value} * {_number(half)}"
    return f"{value} / {_number(a)}"
