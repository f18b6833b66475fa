"""One forward pass with every layer exposed, reduced to what the checks need.

Scores and logits are kept for every input; whole activations only for the first
:data:`STATS_INPUTS` inputs (enough for statistics, bounded memory on big nets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from decoder.decoding import to_probabilities
from decoder.intermediates import LayerRunner

#: Inputs whose full activations are kept for per-layer statistics.
STATS_INPUTS = 64
#: Inputs per ONNX Runtime call.
BATCH = 64


@dataclass(frozen=True)
class LayerStats:
    """Activation statistics of one layer's (first) top over the diagnosed inputs.

    ``spread`` is how much the output changes from input to input: the mean over elements
    of the standard deviation across inputs, divided by the mean absolute value. A healthy
    net keeps it near or above 0.3 all the way; a layer at ~0 no longer sees the input.
    """

    name: str
    type: str
    shape: tuple[int, ...]
    mean: float
    std: float
    min: float
    max: float
    zero_fraction: float
    nonfinite_fraction: float
    spread: float

    def to_dict(self) -> dict[str, object]:
        data = dict(self.__dict__)
        data["shape"] = list(self.shape)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in data.items()}


@dataclass(frozen=True)
class Forward:
    """The outcome of running a batch: scores, probabilities, logits and per-layer statistics."""

    scores: np.ndarray  # (N, K) the score blob, flattened per input
    probabilities: np.ndarray  # (N, K)
    logits: np.ndarray  # (N, K) pre-softmax scores (log-probabilities when no logit layer is found)
    logits_from: str  # layer name, or "log(probabilities)"
    stats: tuple[LayerStats, ...]
    input_spread: float

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.probabilities, axis=1)


def spread_of(values: np.ndarray) -> float:
    """Across-input variation relative to magnitude (see :class:`LayerStats`); nan for one input."""
    if values.shape[0] < 2:
        return float("nan")
    flat = values.reshape(values.shape[0], -1).astype(np.float64)
    magnitude = float(np.abs(flat).mean())
    if not math.isfinite(magnitude) or magnitude == 0.0:
        return 0.0 if magnitude == 0.0 else float("nan")
    return float(flat.std(axis=0).mean()) / magnitude


def run_forward(
    runner: LayerRunner, blob: np.ndarray, score_output: str, score_is_softmax: bool, stats: bool = True
) -> Forward:
    """Run ``blob`` (N, C, H, W); see the module docstring for what is kept.

    Every layer is fetched only for the first :data:`STATS_INPUTS` inputs (and only when
    ``stats``); the rest of the batch asks ONNX Runtime for the scores and logits alone.
    """
    scores: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    kept: dict[str, list[np.ndarray]] = {}
    logit_layer = _logit_layer(runner, score_output) if score_is_softmax else None
    light = [score_output] + ([logit_layer[1]] if logit_layer is not None else [])
    for start in range(0, len(blob), BATCH):
        chunk = np.ascontiguousarray(blob[start : start + BATCH], dtype=np.float32)
        if stats and start < STATS_INPUTS:
            values = runner.run(chunk)
            for layer in runner.layers:
                if layer.tops and layer.tops[0] in values:
                    kept.setdefault(layer.name, []).append(values[layer.tops[0]][: STATS_INPUTS - start])
        else:
            values = dict(zip(light, runner.session.run(light, {runner.input_name: chunk}), strict=True))
        scores.append(values[score_output].reshape(len(chunk), -1))
        if logit_layer is not None:
            logits.append(values[logit_layer[1]].reshape(len(chunk), -1))
    score = np.concatenate(scores).astype(np.float64)
    probabilities = to_probabilities(score, score_is_softmax)
    logit = np.concatenate(logits).astype(np.float64) if logits else score
    if logit_layer is not None and logit.shape == score.shape:
        source = logit_layer[0]
    elif score_is_softmax:
        logit, source = np.log(np.clip(probabilities, 1e-45, None)), "log(probabilities)"
    else:
        logit, source = score, score_output
    types = {layer.name: layer.type for layer in runner.layers}
    layer_stats = tuple(_stats(name, types[name], np.concatenate(parts)) for name, parts in kept.items())
    return Forward(score, probabilities, logit, source, layer_stats, spread_of(blob[:STATS_INPUTS]))


def _logit_layer(runner: LayerRunner, score_output: str) -> tuple[str, str] | None:
    """The layer feeding the final softmax: the one before it, with as many values per input."""
    names = [layer.tops[0] if layer.tops else "" for layer in runner.layers]
    if score_output not in names:
        return None
    position = names.index(score_output)
    if position == 0:
        return None
    previous = runner.layers[position - 1]
    return (previous.name, previous.tops[0]) if previous.tops else None


def _stats(name: str, kind: str, values: np.ndarray) -> LayerStats:
    flat = values.astype(np.float64)
    finite = np.isfinite(flat)
    nonfinite = 1.0 - float(finite.mean()) if flat.size else 0.0
    good = flat[finite] if nonfinite else flat
    if good.size == 0:
        nan = float("nan")
        return LayerStats(name, kind, tuple(values.shape[1:]), nan, nan, nan, nan, 0.0, nonfinite, nan)
    return LayerStats(
        name=name,
        type=kind,
        shape=tuple(values.shape[1:]),
        mean=float(good.mean()),
        std=float(good.std()),
        min=float(good.min()),
        max=float(good.max()),
        zero_fraction=float(np.mean(flat == 0.0)),
        nonfinite_fraction=nonfinite,
        spread=spread_of(np.where(finite, flat, 0.0)),
    )
