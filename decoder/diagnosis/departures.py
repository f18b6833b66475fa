"""Where the user's blob departs from the model's stated settings, and whose mistake that is.

A fitted :class:`~decoder.diagnosis.blobs.BlobTransform` can contradict three settings the
metadata holds: the channel order, the mean and the scale. Each contradiction is either
the user's mistake (repair the blob to the stated preprocessing) or the metadata's (the
user had it right; reconvert). With expected labels, :func:`judge` measures both readings
for every combination of contradicted settings and keeps the one that reproduces the
labels best, only when it does so significantly; without them, a contradicted setting the
conversion merely assumed is not held against the user.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from decoder.diagnosis.blobs import BlobTransform, mean_of
from decoder.diagnosis.findings import Finding
from decoder.diagnosis.fixes import Repair
from decoder.diagnosis.inputs import TOLERANCE, mean_departs, scale_departs, subtracted_mean
from decoder.diagnosis.provenance import (
    SETTING_CODES,
    SETTING_NAMES,
    is_assumed,
    percent,
    reconvert_hint,
    significantly_better,
    source_phrase,
)
from decoder.diagnosis.variants import describe_setting
from decoder.spec import PreprocessSpec

Predict = Callable[[np.ndarray], np.ndarray]  # blob -> predicted class per input


@dataclass(frozen=True)
class Departure:
    """One stated setting the user's blob contradicts, and the user's own value of it."""

    setting: str  # "channel_order" | "mean" | "scale"
    fitted: str  # the user's value in words ("channel order RGB")
    option: str  # the convert/attach option that states the user's value
    changes: dict[str, Any]  # PreprocessSpec fields that adopt the user's value


def departures(t: BlobTransform, spec: PreprocessSpec) -> list[Departure]:
    """The settings ``t`` contradicts (an inverted blob's mean and scale are not settings: only its channels)."""
    out = []
    if t.swapped and spec.channels == 3:
        other = "RGB" if spec.channel_order == "BGR" else "BGR"
        out.append(
            Departure("channel_order", f"channel order {other}", f"--channel-order {other}", {"channel_order": other})
        )
    if t.inverted:
        return out
    if scale_departs(t, spec):
        out.append(Departure("scale", f"scale {t.a:.6g}", f"--scale {t.a:.6g}", {"scale": float(t.a)}))
    if mean_departs(t, spec):
        found = _user_mean(t, spec)
        if found is not None:
            out.append(found)
    return out


def _user_mean(t: BlobTransform, spec: PreprocessSpec) -> Departure | None:
    """The mean the user subtracted as a setting (none, a mean pixel, the mean image), or None if it is neither."""
    subtracted = np.asarray(subtracted_mean(t, spec), np.float64)
    stated = np.broadcast_to(mean_of(spec, spec.mean_kind), subtracted.shape)
    level = max(float(np.sqrt(np.mean(stated**2))), 1.0)
    if float(np.sqrt(np.mean(subtracted**2))) <= TOLERANCE * level:
        return Departure("mean", "no mean", "--mean-kind none", {"mean_kind": "none", "mean": None})
    per_channel = subtracted.reshape(spec.channels, -1)
    if float(per_channel.std(axis=1).max()) < 0.5:
        values = per_channel.mean(axis=1).astype(np.float32)
        if spec.mean is not None and spec.mean.ndim == 3:
            pixel = spec.mean.mean(axis=(1, 2)).astype(np.float32)
            if np.allclose(values, pixel, atol=1.0):
                changes = {"mean_kind": "pixel", "mean": pixel}
                return Departure("mean", "the mean image's mean pixel", "--mean-kind pixel", changes)
        text = ",".join(f"{v:.6g}" for v in values)
        return Departure("mean", f"mean pixel {text}", f"--mean-values {text}", {"mean_kind": "pixel", "mean": values})
    image = spec.mean is not None and spec.mean.ndim == 3
    if image and float(np.sqrt(np.mean((subtracted - spec.mean) ** 2))) <= TOLERANCE * level:
        return Departure("mean", "the mean image", "--mean-kind image", {"mean_kind": "image", "mean": spec.mean})
    return None


def adopt(spec: PreprocessSpec, chosen: Sequence[Departure]) -> PreprocessSpec:
    """The stated spec with the user's values of the ``chosen`` settings."""
    changes: dict[str, Any] = {}
    for departure in chosen:
        changes.update(departure.changes)
    return spec.with_changes(**changes) if changes else spec


@dataclass
class Judgement:
    """What the measurement decided: the repair to offer (if any), the findings, the figures."""

    repair: Repair | None
    findings: list[Finding]
    kept: tuple[Departure, ...] = ()
    accuracy: dict[str, float] = dataclasses.field(default_factory=dict)


def judge(
    full: Repair,
    deps: list[Departure],
    blob: np.ndarray,
    user_predictions: np.ndarray,
    expected: np.ndarray,
    predict: Predict,
    findings: list[Finding],
    model: str,
) -> Judgement:
    """Measure the full repair and every "the metadata is wrong about these settings" repair on the labels.

    Candidates are tried from the fewest kept settings up; one replaces the best so far
    only by beating it significantly, so the metadata is trusted unless measured wrong.
    It is offered only when it beats the blob as fed significantly; otherwise the input
    findings are kept as information, with the figures that show the repair would not help.
    """
    spec = full.spec
    candidates: list[tuple[tuple[Departure, ...], Repair]] = [((), full)]
    for size in range(1, len(deps) + 1):
        for kept in itertools.combinations(deps, size):
            candidates.append((kept, dataclasses.replace(full, target=adopt(spec, kept))))
    predictions = [predict(repair.apply(blob)) for _, repair in candidates]
    correct = [int(np.sum(p == expected)) for p in predictions]
    best = 0
    for index in range(1, len(candidates)):
        if correct[index] > correct[best] and significantly_better(predictions[index], predictions[best], expected):
            best = index
    kept, repair = candidates[best]
    figures = {
        "as_fed": float(np.mean(user_predictions == expected)),
        "stated": float(np.mean(predictions[0] == expected)),
        "chosen": float(np.mean(predictions[best] == expected)),
    }
    n = len(expected)
    out = list(findings)
    if kept:
        settings = {d.setting for d in kept}
        codes = {code for s in settings for code in SETTING_CODES[s]}
        out = [f for f in out if f.code not in codes]
        out.append(_suspect_finding(spec, kept, predictions[best], predictions[0], expected, model))
    if not significantly_better(predictions[best], user_predictions, expected):
        note = (
            f"; putting it right does not improve the agreement with the {n} expected labels "
            f"({percent(user_predictions, expected)} as fed, {percent(predictions[best], expected)} repaired), "
            "so no repair is offered"
        )
        out = [_as_info(f, note) if f.code in INPUT_CODES and f.severity != "info" else f for f in out]
        return Judgement(None, out, kept, figures)
    return Judgement(repair, out, kept, figures)


#: Codes about the input pipeline (the repair's concern).
INPUT_CODES = ("input-range", "mean-missing", "mean-wrong", "channel-order", "layout", "polarity", "pixel-mismatch")


def _as_info(finding: Finding, note: str) -> Finding:
    return dataclasses.replace(finding, severity="info", message=finding.message + note, fix="")


def _suspect_finding(
    spec: PreprocessSpec,
    kept: Sequence[Departure],
    kept_predictions: np.ndarray,
    stated_predictions: np.ndarray,
    expected: np.ndarray,
    model: str,
) -> Finding:
    """``metadata-suspect``: the user's values of some settings reproduce the labels better than the stated ones."""
    assumed = [d.setting for d in kept if is_assumed(spec, d.setting)]
    stated = "; ".join(f"{describe_setting(spec, d.setting)}{source_phrase(spec, d.setting)}" for d in kept)
    yours = ", ".join(d.fitted for d in kept)
    message = (
        f"the model's metadata may be wrong: it says {stated}, your blobs use {yours}; kept that way they reproduce "
        f"{percent(kept_predictions, expected)} of the {len(expected)} expected labels, the stated preprocessing "
        f"{percent(stated_predictions, expected)}"
    )
    options = " ".join(d.option for d in kept)
    fix = f"if the model was trained that way, rewrite its metadata: {reconvert_hint(spec, options, model)}"
    evidence = {"settings": [d.setting for d in kept], "options": options, "assumed": assumed}
    return Finding("metadata-suspect", "error" if assumed else "warning", message, fix, evidence)


def hedge_assumed(findings: list[Finding], spec: PreprocessSpec, deps: list[Departure], model: str) -> list[Finding]:
    """Without expected labels: a contradicted setting the conversion only assumed is not held against the user."""
    out = list(findings)
    for departure in deps:
        if not is_assumed(spec, departure.setting):
            continue
        codes = SETTING_CODES[departure.setting]
        addition = (
            f"; that {SETTING_NAMES[departure.setting]} was only assumed at conversion, no file states it: if the "
            f"model was trained with {departure.fitted}, your blob is right and the metadata wrong. Give the images "
            "and their expected labels (--expect) to measure which"
        )
        fix = (
            f"either change your blob, or, if the model was trained with {departure.fitted}, rewrite its metadata: "
            f"{reconvert_hint(spec, departure.option, model)}"
        )
        out = [
            dataclasses.replace(f, severity="warning", message=f.message + addition, fix=fix) if f.code in codes else f
            for f in out
        ]
    return out
