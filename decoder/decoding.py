"""From the score blob to labels: probabilities (softmax at most once), argmax, top-k.

DIGITS reads the last output blob, which in its deploy nets is already a Softmax; a
second softmax would squash the probabilities toward uniform, so one is applied only
when the graph does not end in one. Top-k follows DIGITS's ``(-scores).argsort()``:
ties go to the lower class index (numpy's sort is stable for the small class counts
DIGITS sorted with insertion sort, and we use a stable sort everywhere).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Ranked:
    """One entry of a top-k list."""

    label: str
    index: int
    probability: float


@dataclass(frozen=True)
class Prediction:
    """The decoded result for one image, as `decode --json` prints it."""

    image: str
    label: str
    index: int
    probability: float
    top_k: tuple[Ranked, ...]

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["top_k"] = [asdict(r) for r in self.top_k]
        return data


def softmax(scores: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    shifted = scores - scores.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def to_probabilities(scores: np.ndarray, already_softmax: bool) -> np.ndarray:
    """(N, K) probabilities from a score blob of shape (N, K, ...): flattened per image like DIGITS."""
    flat = np.asarray(scores, dtype=np.float64).reshape(scores.shape[0], -1)
    return flat if already_softmax else softmax(flat)


def label_of(index: int, labels: Sequence[str]) -> str:
    """The i-th label, or the index itself when the model carries no labels."""
    return labels[index] if index < len(labels) else str(index)


def decode(probabilities: np.ndarray, labels: Sequence[str], names: Sequence[str], top_k: int = 5) -> list[Prediction]:
    """One :class:`Prediction` per row of ``probabilities`` (N, K)."""
    k = max(1, min(top_k, probabilities.shape[1]))
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    predictions = []
    for row, name, ranked in zip(probabilities, names, order, strict=True):
        entries = tuple(Ranked(label_of(int(i), labels), int(i), float(row[i])) for i in ranked)
        best = entries[0]
        predictions.append(Prediction(str(name), best.label, best.index, best.probability, entries))
    return predictions
