"""What a net's score blob is: one score vector per image (a classifier), or something else.

`decode IMAGE` prints a label and a probability; that is only an answer when the score
blob holds one vector of class scores per image. A detector's (1 x 4420 x 2) scores, MTCNN's
4-D probability maps, a one-value regression head or a Sigmoid's independent per-class
scores would be softmaxed into a confident-looking label that means nothing. This module
decides, from shapes and the producing layer, and words the refusal; it imports numpy only,
so the prediction path can use it on files converted by older versions too.
"""

from __future__ import annotations

from collections.abc import Sequence

CLASSIFIER = "classifier"
OTHER = "other"
KINDS = (CLASSIFIER, OTHER)

Shape = Sequence[int | str | None]


def per_image_shape(shape: Shape, fixed_batch: int | None = None) -> tuple[int | str | None, ...]:
    """The shape of one image's part of an output (what :meth:`decoder.runtime.Model.run` stacks).

    A dynamic-batch output is (N, ...): one image is ``shape[1:]``. A fixed-batch-1 net gives
    one image per call, so its whole output is that image's unless it starts with the batch 1.
    """
    shape = tuple(shape)
    if fixed_batch == 1 and (not shape or shape[0] != 1):
        return shape
    return shape[1:]


def head_kind(image_shape: Shape, producer_type: str = "") -> tuple[str, str]:
    """(``"classifier"`` or ``"other"``, why not a classifier) for a score blob's per-image shape.

    A classifier's scores are one vector per image: at most one axis longer than 1 (Caffe's
    (K,), (K, 1, 1) and (1, K) all are), at least 2 classes, and not a Sigmoid (independent
    per-class scores: softmaxing them would invent a distribution). Unknown sizes count as
    a classifier here; the runtime checks the arrays themselves.
    """
    dims = list(image_shape)
    known = [d for d in dims if isinstance(d, int)]
    if len(known) == len(dims):
        long_axes = [d for d in known if d > 1]
        if len(long_axes) > 1:
            return OTHER, f"its score blob holds {format_shape(dims)} values per image, not one vector of class scores"
        count = long_axes[0] if long_axes else 1
        if count < 2:
            return OTHER, "its score blob holds a single value per image (a regression or one-unit head), not classes"
    if producer_type == "Sigmoid":
        return OTHER, "its score blob comes from a Sigmoid: independent per-class scores, not one distribution"
    if producer_type == "ArgMax":
        return OTHER, "its score blob is an ArgMax output: class indices, not scores"
    return CLASSIFIER, ""


def format_shape(shape: Shape) -> str:
    """``(N, 4420, 2)`` as ``Nx4420x2``; an unknown size as ``?``."""
    return "x".join("?" if d is None else str(d) for d in shape) or "scalar"


def describe_outputs(names: Sequence[str], shapes: Sequence[Shape]) -> str:
    """``loc (Nx4420x4), conf (Nx4420x2)``: each output with its shape, for one-line messages."""
    return ", ".join(f"{name} ({format_shape(shape)})" for name, shape in zip(names, shapes, strict=True))
