"""Accuracy, per-class accuracy and the confusion matrix, when the true classes are known.

DIGITS's "Classify Many" shows these for a labelled image list (top-1 and top-5 accuracy,
per-class accuracy, a confusion matrix); `decode` prints the same on stderr and can draw
the matrix (``--confusion confusion.png``, which needs matplotlib, the ``viz`` extra).
Counts are kept as (true, predicted) pairs, so the tally needs no class count up front
(a model without labels still gets one from the list file's class indices).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from decoder.errors import DecoderError

#: Above this many classes the per-class table and the matrix are summarised, not printed whole.
MAX_PRINTED_CLASSES = 20


class Tally:
    """Running counts of (true class, predicted class), plus top-k hits."""

    def __init__(self, labels: Sequence[str] = ()) -> None:
        self.labels = tuple(labels)
        self.pairs: Counter[tuple[int, int]] = Counter()
        self.top_k_hits = 0
        self.top_k = 0

    def add(self, truth: int, predicted: int, top: Sequence[int] = ()) -> None:
        """Count one image: its true class, the predicted one, and the top-k indices."""
        self.pairs[truth, predicted] += 1
        self.top_k = max(self.top_k, len(top))
        self.top_k_hits += truth in top

    @property
    def total(self) -> int:
        return sum(self.pairs.values())

    @property
    def correct(self) -> int:
        return sum(n for (truth, predicted), n in self.pairs.items() if truth == predicted)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    def class_names(self) -> list[str]:
        """One name per class index up to the largest seen: the label, or the index itself."""
        size = max([len(self.labels), *(max(pair) + 1 for pair in self.pairs)])
        return [self.labels[i] if i < len(self.labels) else str(i) for i in range(size)]

    def matrix(self) -> np.ndarray:
        """The confusion matrix: rows are true classes, columns predicted classes."""
        size = len(self.class_names())
        confusion = np.zeros((size, size), dtype=np.int64)
        for (truth, predicted), count in self.pairs.items():
            confusion[truth, predicted] = count
        return confusion

    def report(self) -> str:
        """Accuracy, per-class accuracy and (for few classes) the matrix, as text for the terminal."""
        if not self.total:
            return ""
        lines = [f"accuracy: {100 * self.accuracy:.2f}% ({self.correct:,} of {self.total:,} images with a known class)"]
        if self.top_k > 1:
            lines[0] += f", top-{self.top_k}: {100 * self.top_k_hits / self.total:.2f}%"
        names = self.class_names()
        confusion = self.matrix()
        counts = confusion.sum(axis=1)
        present = [i for i in range(len(names)) if counts[i]]
        rows = sorted(present, key=lambda i: confusion[i, i] / counts[i])
        if len(present) > MAX_PRINTED_CLASSES:
            lines.append(f"per-class accuracy, the {MAX_PRINTED_CLASSES} worst of {len(present)} classes:")
            rows = rows[:MAX_PRINTED_CLASSES]
        else:
            lines.append("per-class accuracy:")
            rows = present
        width = max(len(names[i]) for i in rows)
        for i in rows:
            lines.append(
                f"  {names[i]:<{width}}  {100 * confusion[i, i] / counts[i]:6.2f}%  ({confusion[i, i]:,}/{counts[i]:,})"
            )
        if len(names) <= MAX_PRINTED_CLASSES:
            lines.append("confusion matrix (rows: true class, columns: predicted class):")
            lines.extend(_matrix_lines(confusion, names))
        return "\n".join(lines)


def _matrix_lines(confusion: np.ndarray, names: Sequence[str]) -> list[str]:
    name_width = max(len(n) for n in names)
    cell = max(len(f"{confusion.max():,}"), *(len(n) for n in names)) + 1
    header = " " * (name_width + 2) + "".join(f"{n:>{cell}}" for n in names)
    rows = [
        f"  {n:<{name_width}}" + "".join(f"{v:>{cell},}" for v in row) for n, row in zip(names, confusion, strict=True)
    ]
    return [header, *rows]


def require_matplotlib() -> None:
    """Fail early, before a long run, when ``--confusion`` cannot be drawn."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise DecoderError(
            "--confusion draws with matplotlib, which is not installed; "
            "install the optional extra: pip install 'caffe-decoder[viz]' (or pip install matplotlib)"
        )


def draw_confusion(tally: Tally, path: str | os.PathLike[str]) -> None:
    """Draw the confusion matrix (row-normalised colours, counts written in) to ``path``, atomically."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # no display needed; this is a file
    from matplotlib import pyplot as plt

    names = tally.class_names()
    confusion = tally.matrix()
    totals = np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    size = min(4 + 0.45 * len(names), 40)
    figure, axes = plt.subplots(figsize=(size, size * 0.9))
    image = axes.imshow(confusion / totals, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(names))
    axes.set_xticks(ticks, names, rotation=90 if max(map(len, names)) > 3 else 0)
    axes.set_yticks(ticks, names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(f"accuracy {100 * tally.accuracy:.2f}% on {tally.total:,} images")
    if len(names) <= 30:
        for (row, column), count in np.ndenumerate(confusion):
            if count:
                dark = confusion[row, column] / totals[row, 0] > 0.5
                axes.text(
                    column, row, f"{count}", ha="center", va="center", fontsize=8, color="white" if dark else "black"
                )
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class")
    figure.tight_layout()
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        figure.savefig(temporary, format=target.suffix.lstrip(".").lower() or "png", dpi=120)
        os.replace(temporary, target)
    except (OSError, ValueError) as exc:
        raise DecoderError(f"cannot write the confusion matrix ({exc})", target) from None
    finally:
        plt.close(figure)
        temporary.unlink(missing_ok=True)
