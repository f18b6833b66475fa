"""Checks on what comes out of the network: constant, saturated or doubly-softmaxed scores.

Thresholds were measured on the genuine DIGITS LeNet and MNIST (tests/test_diagnose_lenet.py):
logit spread (see :func:`logit_spread`) is 0.5-0.7 for 20 digits of ONE class, 1.4 for mixed
digits, 0.9 for inverted digits, but 0.04 for pycaffe's [0,1] floats without the mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from decoder.decoding import label_of
from decoder.diagnosis.findings import Finding
from decoder.diagnosis.forward import Forward

#: Logit spread under which the scores are called input-independent.
CONSTANT_SPREAD = 0.1
#: Median top-1 minus top-2 logit above which the softmax is saturated for practical purposes.
SATURATED_MARGIN = 60.0


def logit_spread(logits: np.ndarray) -> float:
    """How much the logits move between inputs, relative to how far apart the classes are.

    Logits are centred per input first (a softmax ignores a per-input shift); the result is
    the mean over classes of the across-input standard deviation divided by the mean
    absolute centred logit.
    """
    if logits.shape[0] < 2:
        return float("nan")
    centred = logits - logits.mean(axis=1, keepdims=True)
    magnitude = float(np.abs(centred).mean())
    if magnitude == 0.0:
        return 0.0
    return float(centred.std(axis=0).mean()) / magnitude


def check_constant(
    forward: Forward,
    labels: Sequence[str],
    reference: Forward | None = None,
    expected: np.ndarray | None = None,
) -> list[Finding]:
    """``constant-output``: the same answer whatever the input."""
    n = forward.probabilities.shape[0]
    if n < 2:
        return []
    predictions = forward.predictions
    counts = np.bincount(predictions, minlength=forward.probabilities.shape[1])
    top = int(np.argmax(counts))
    spread = logit_spread(forward.logits)
    evidence: dict[str, object] = {
        "inputs": n,
        "logit_spread": round(spread, 4),
        "most_common": label_of(top, labels),
        "most_common_count": int(counts[top]),
        "logits_from": forward.logits_from,
        "example_logits": [round(float(v), 3) for v in forward.logits[0]],
    }
    varied_elsewhere = ""
    if reference is not None and len(np.unique(reference.predictions)) > 1:
        distinct = len(np.unique(reference.predictions))
        varied_elsewhere = f"the stated preprocessing of the same images gives {distinct} different labels"
        evidence["reference_logit_spread"] = round(logit_spread(reference.logits), 4)
    elif expected is not None and len(np.unique(expected)) > 1:
        varied_elsewhere = f"the expected labels hold {len(np.unique(expected))} different classes"
    same = f"{int(counts[top])} of {n} inputs are classified {label_of(top, labels)!r}"
    example = ", ".join(f"{v:.2f}" for v in forward.logits[0][:10])
    if spread < CONSTANT_SPREAD:
        message = (
            f"the scores barely depend on the input: across {n} inputs the logits ({forward.logits_from}) vary by "
            f"{100 * spread:.1f}% of their magnitude (a working net varies 40-150%); {same}; first input's logits "
            f"[{example}]"
        )
        fix = "the input is not what the net was trained on; see the input findings for the cause"
        return [Finding("constant-output", "error", message, fix, evidence)]
    if counts[top] == n and n >= 5 and varied_elsewhere:
        message = f"all {n} inputs get the same label {label_of(top, labels)!r}, while {varied_elsewhere}"
        fix = "the input is not what the net was trained on; see the input findings for the cause"
        return [Finding("constant-output", "error", message, fix, evidence)]
    if counts[top] == n and n >= 8:
        message = f"all {n} inputs get the same label {label_of(top, labels)!r} (logit spread {100 * spread:.0f}%)"
        fix = "if these images are not all of that class, check the preprocessing (run with the images too)"
        return [Finding("constant-output", "warning", message, fix, evidence)]
    return []


def check_saturated(forward: Forward, reference: Forward | None = None) -> list[Finding]:
    """``saturated-softmax``: logits so large that every probability is exactly 0 or 1."""
    if forward.logits_from == "log(probabilities)":
        return []
    ordered = np.sort(forward.logits, axis=1)
    if ordered.shape[1] < 2:
        return []
    margin = float(np.median(ordered[:, -1] - ordered[:, -2]))
    certain = float(np.mean(forward.probabilities.max(axis=1).astype(np.float32) == 1.0))
    if margin < SATURATED_MARGIN or certain < 0.9:
        return []
    evidence: dict[str, object] = {"median_margin": round(margin, 2), "fraction_certain": round(certain, 3)}
    comparison = ""
    if reference is not None:
        ref_ordered = np.sort(reference.logits, axis=1)
        ref_margin = float(np.median(ref_ordered[:, -1] - ref_ordered[:, -2]))
        evidence["reference_median_margin"] = round(ref_margin, 2)
        comparison = f" (the stated preprocessing of the same images: {ref_margin:.1f})"
    message = (
        f"the softmax is saturated: the median gap between the top two logits is {margin:.0f}{comparison} and "
        f"{100 * certain:.0f}% of the inputs get probability exactly 1.0"
    )
    fix = "the input is scaled up (e.g. 0..255 fed to a net that expects [0,1] or a pre-scaled blob); see input-range"
    return [Finding("saturated-softmax", "warning", message, fix, evidence)]


#: Layers that pass values through unchanged in value: a Softmax behind one of them still sees probabilities.
PASS_THROUGH = frozenset({"Reshape", "Flatten", "Dropout", "Split", "Concat", "Slice", "Permute"})


def check_double_softmax(forward: Forward, layers: Sequence[Any], score_is_softmax: bool) -> list[Finding]:
    """``double-softmax``: two Softmax layers chained in the graph, or our runtime softmaxing probabilities.

    Near-uniform probabilities alone are NOT taken for a double softmax: untrained weights
    (tiny logits) give them too (see :mod:`decoder.diagnosis.untrained`).
    """
    findings: list[Finding] = []
    previous: Any = None
    for layer in layers:
        if layer.type == "Softmax" and previous is not None:
            message = (
                f"Softmax layer {layer.name!r} takes the output of Softmax layer {previous.name!r}: the second "
                "squashes the probabilities toward uniform"
            )
            fix = f"delete Softmax layer {layer.name!r} from the deploy prototxt and convert again"
            evidence = {"layers": [previous.name, layer.name]}
            findings.append(Finding("double-softmax", "error", message, fix, evidence))
            return findings
        if layer.type == "Softmax":
            previous = layer
        elif layer.type not in PASS_THROUGH:
            previous = None
    scores = forward.scores
    k = scores.shape[1]
    if not score_is_softmax and k >= 2 and np.all(scores >= 0) and np.all(np.abs(scores.sum(axis=1) - 1) < 1e-4):
        message = (
            "the score output already sums to 1 for every input (a probability), but the model is marked as "
            "returning logits, so a softmax is applied on top"
        )
        fix = "re-convert with `decode convert` so the metadata records that the net ends in a softmax"
        findings.append(Finding("double-softmax", "warning", message, fix, {}))
    return findings
