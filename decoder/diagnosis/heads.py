"""``wrong-head`` and the caller's own scores: is the answer read from the right blob, the right way?

Caffe's ArgMax outputs class INDICES as floats (FACTS.md section 7); softmaxed or sorted
as if they were scores they give confident nonsense. Two places can hold them: the
model's score output (a conversion that read it from an ArgMax; current conversions read
the ArgMax's input) and the scores the user's own code read out (``scores=`` /
``--scores``). The caller's scores are also matched against every blob of the network for
the same inputs, which names the blob they really came from, and against a softmax of the
model's probabilities (a second softmax: ``double-softmax``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from decoder.decoding import to_probabilities
from decoder.diagnosis.findings import Finding
from decoder.diagnosis.forward import Forward

#: Inputs compared when matching the caller's scores against every blob.
MATCH_INPUTS = 16
#: Relative tolerance of "these are the same numbers" (float32 through different runtimes).
MATCH_TOLERANCE = 1e-3


def looks_like_indices(scores: np.ndarray) -> bool:
    """Whole numbers >= 0, distinct within each input, not one-hot: what an ArgMax (top_k) writes."""
    if scores.size == 0 or scores.ndim != 2 or not np.all(np.isfinite(scores)):
        return False
    whole = np.all(scores == np.round(scores)) and np.all(scores >= 0) and float(scores.max()) < 1e6
    if not whole:
        return False
    if scores.shape[1] == 1:
        return len(np.unique(scores)) > 1  # one index per input, not the same everywhere
    distinct = all(len(np.unique(row)) == len(row) for row in scores)
    return bool(distinct)


def check_head(forward: Forward, layers: Sequence[Any], score_output: str) -> list[Finding]:
    """The model's own score blob: an ArgMax's top, or values that are indices."""
    layer = next((item for item in layers if score_output in item.tops), None)
    if layer is not None and layer.type == "ArgMax":
        message = (
            f"the scores are read from {layer.name!r}, an ArgMax layer: its outputs are class indices (as floats), "
            "not scores, so every probability and top-k label derived from them is meaningless"
        )
        fix = "convert again with a current `decode convert` (it reads the scores from the ArgMax's input)"
        return [Finding("wrong-head", "error", message, fix, {"layer": layer.name, "blob": score_output})]
    if looks_like_indices(forward.scores) and forward.scores.shape[0] >= 2:
        example = ", ".join(f"{v:g}" for v in forward.scores[0][:5])
        message = (
            f"the score blob {score_output!r} holds whole numbers, distinct within each input ([{example}] for the "
            "first): class indices, as an ArgMax writes, not scores"
        )
        fix = "convert with --score-output naming the blob of probabilities (the input of the ArgMax)"
        return [Finding("wrong-head", "error", message, fix, {"blob": score_output})]
    return []


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(
        np.allclose(a, b, rtol=MATCH_TOLERANCE, atol=MATCH_TOLERANCE * max(float(np.abs(b).max()), 1e-6))
    )


def check_caller_scores(
    caller: np.ndarray, fed: np.ndarray, forward: Forward, runner: Any, score_output: str
) -> list[Finding]:
    """Compare what the user's code read out with what the network computes for the same inputs."""
    caller = np.asarray(caller, dtype=np.float64)
    caller = caller.reshape(len(caller), -1) if caller.ndim >= 2 else caller.reshape(-1, 1)
    if len(caller) != len(forward.scores):
        from decoder.errors import DecoderError

        raise DecoderError(f"{len(caller)} rows of scores for {len(forward.scores)} inputs: give one row per input")
    probabilities = forward.probabilities
    if looks_like_indices(caller) and not _same(caller, forward.scores):
        message = (
            f"your scores are whole numbers, distinct within each input ([{', '.join(f'{v:g}' for v in caller[0][:5])}]"
            "): class indices, as an ArgMax layer writes, not scores"
        )
        fix = f"read the class scores from {score_output!r} (the model's score blob), not from the ArgMax"
        return [Finding("wrong-head", "error", message, fix, {"read": "indices"})]
    if caller.shape == probabilities.shape:
        if _same(caller, probabilities) or _same(caller, forward.scores) or _same(caller, forward.logits):
            return []
        if _same(caller, _softmax(probabilities)):
            message = (
                "your scores are a softmax of the model's probabilities: a second softmax, which squashes them toward "
                f"uniform (top score {caller.max():.3f} where the model gives {probabilities.max():.3f})"
            )
            fix = "read the probabilities as they come out of the net: do not apply a softmax to its softmax output"
            return [Finding("double-softmax", "error", message, fix, {"read": "softmax of probabilities"})]
    blob = _matching_blob(caller, fed, runner)
    k = probabilities.shape[1]
    if blob == score_output:
        return []
    if blob is not None:
        message = (
            f"your scores are blob {blob!r} ({caller.shape[1]} values per input), not the model's score blob "
            f"{score_output!r} ({k} classes)"
        )
        fix = f"read the scores from {score_output!r}"
        return [Finding("wrong-head", "error", message, fix, {"read": blob, "score_output": score_output})]
    if caller.shape[1] != k:
        message = (
            f"your scores have {caller.shape[1]} values per input, the model's score blob {score_output!r} has {k}"
        )
        fix = f"read the class scores from {score_output!r}"
        return [Finding("wrong-head", "error", message, fix, {"read": None, "score_output": score_output})]
    agreement = float(np.mean(np.argmax(caller, axis=1) == forward.predictions))
    if agreement < 0.99:
        message = (
            f"your scores match no blob of the network for these inputs; their top class agrees with the model's "
            f"for {100 * agreement:.1f}% of the inputs"
        )
        fix = "check that the scores come from the same inputs, in the same order, and from the score blob"
        return [Finding("wrong-head", "warning", message, fix, {"agreement": round(agreement, 4)})]
    return []


def _matching_blob(caller: np.ndarray, fed: np.ndarray, runner: Any) -> str | None:
    """The network blob equal to the caller's scores on the first inputs (raw, or softmaxed), if any."""
    count = min(len(fed), MATCH_INPUTS)
    values = runner.run(fed[:count])
    target = caller[:count]
    for name, value in values.items():
        flat = np.asarray(value, dtype=np.float64).reshape(count, -1) if len(value) == count else None
        if flat is None or flat.shape != target.shape:
            continue
        if _same(target, flat) or _same(target, to_probabilities(flat, False)):
            return name
    return None
