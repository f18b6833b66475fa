"""What a diagnosis says: :class:`Finding`, its stable codes and severities.

Codes are part of the interface (scripts match on them, the README lists them), so they
live in one table here and a finding with an unknown code cannot be built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[str, ...] = ("error", "warning", "info")  # most severe first

#: code -> one line on what it means (the README's table is generated from this).
CODES: dict[str, str] = {
    "constant-output": "the scores (nearly) do not depend on the input: every image gets the same answer",
    "saturated-softmax": "the logits are so large that the softmax is exactly 0/1 (inputs scaled up)",
    "double-softmax": "two softmaxes chained in the graph, or your scores are a softmax of probabilities",
    "wrong-head": "scores read from an ArgMax (class indices) or from a blob that holds no class scores",
    "untrained-weights": "the weights look never trained: constant biases, weights at their initialisation scale",
    "metadata-suspect": "your blobs fit another channel order / mean / scale than the model's metadata, and do better",
    "input-range": "the blob is on a different scale than the model was trained on (e.g. [0,1] vs 0..255)",
    "mean-missing": "the model expects a mean to be subtracted and the blob has none",
    "mean-wrong": "a mean was subtracted, but not the one the model expects (kind, scale or value)",
    "channel-order": "colour channels in RGB order where the model's metadata says BGR (or the reverse)",
    "layout": "the blob's memory layout is not CHW (HWC data reshaped as CHW, or H and W swapped)",
    "polarity": "the images are inverted relative to the training data (e.g. white-on-black MNIST)",
    "missing-weights": "a deploy layer has no weights in the caffemodel (renamed?): Caffe keeps random ones",
    "dead-layer": "a layer's output is all zero, NaN/Inf, or no longer depends on the input",
    "input-shape": "the blob's shape does not fit the network's input",
    "pixel-mismatch": "after undoing the identified mistakes the blob still differs from the stated preprocessing's",
    "expected-labels": "how well the stated preprocessing (and variants of it) reproduce the expected labels",
}


@dataclass(frozen=True)
class Finding:
    """One diagnosis: a stable ``code``, a ``severity``, what was seen and what to do.

    ``message`` states the observation with the figures that support it; ``fix`` says what
    to change in plain words; ``numpy`` / ``pycaffe`` carry code for the fix when there is
    one. ``evidence`` holds the raw figures for machines (JSON).
    """

    code: str
    severity: Severity
    message: str
    fix: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    numpy: str = ""
    pycaffe: str = ""

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown finding code {self.code!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"code": self.code, "severity": self.severity, "message": self.message, "fix": self.fix}
        if self.numpy:
            data["numpy"] = self.numpy
        if self.pycaffe:
            data["pycaffe"] = self.pycaffe
        data["evidence"] = self.evidence
        return data


def severity_rank(severity: str) -> int:
    """0 for errors, 1 for warnings, 2 for info: the order findings are listed in."""
    return SEVERITIES.index(severity)
