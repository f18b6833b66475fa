"""`diagnose()`: from a model and the user's inputs to a :class:`Report`.

The order is the order of evidence: the Caffe files (missing weights), the blob's shape,
how the blob relates to the model's stated preprocessing (scale, mean, channels, layout),
the images against the training mean (polarity), then what the network does with the
inputs (constant or saturated scores, dead layers, the score head, untrained weights),
the preprocessing variants, and finally the repair, which is run through the network and
offered only when it was measured to help (:mod:`decoder.diagnosis.departures`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from decoder.diagnosis import activations, heads, outputs
from decoder.diagnosis.blobs import BlobTransform, fit_with_pixels, infer_from_blob
from decoder.diagnosis.departures import INPUT_CODES, adopt, departures, hedge_assumed, judge
from decoder.diagnosis.expect import expected_indices
from decoder.diagnosis.findings import Finding
from decoder.diagnosis.fixes import Repair
from decoder.diagnosis.forward import Forward, run_forward
from decoder.diagnosis.inputs import check_shape, describe_range, pixel_findings, require_finite, transform_findings
from decoder.diagnosis.opening import open_model
from decoder.diagnosis.pixels import PixelCheck, check_pixels, digits_blob, network_pixels
from decoder.diagnosis.provenance import is_assumed, reconvert_hint, stated_settings, unknown_provenance_note
from decoder.diagnosis.report import Report
from decoder.diagnosis.snippets import numpy_snippet, pycaffe_snippet
from decoder.diagnosis.untrained import check_untrained, weight_tensors
from decoder.diagnosis.variants import build_variants, run_variants, variant_findings
from decoder.errors import DecoderError
from decoder.heads import CLASSIFIER
from decoder.preprocess import ImageSource
from decoder.spec import GRAPH_KEY, SPEC_KEY, PreprocessSpec

PathLike = str | os.PathLike[str]
#: Output symptoms an untrained net explains by itself (they would send the user after the input).
UNTRAINED_SYMPTOMS = ("constant-output", "saturated-softmax", "polarity")


def diagnose(
    model: PathLike | None,
    images: Sequence[ImageSource] | None = None,
    blobs: np.ndarray | PathLike | None = None,
    expect: Sequence[object] | np.ndarray | None = None,
    *,
    scores: np.ndarray | PathLike | None = None,
    prototxt: PathLike | None = None,
    weights: PathLike | None = None,
    mean: PathLike | None = None,
    labels: PathLike | None = None,
    train_val: PathLike | None = None,
    overrides: dict[str, object] | None = None,
) -> Report:
    """Why does this model give constant or wrong answers on these inputs?

    ``model`` is a .onnx written by `decode convert`, or Caffe sources (DIGITS archive,
    folder; or None with ``prototxt`` + ``weights``). ``images`` are the source images
    (paths or uint8 arrays); ``blobs`` what the user's code fed the network (N, C, H, W
    float32, or a .npy path), in the order of ``images`` when both are given; ``expect``
    the labels the user expected (names or class numbers), one per image or blob;
    ``scores`` what the user's code read out of the network for those inputs (N, K), to
    check it read the right blob the right way. ``overrides``: `decode convert`'s preprocessing
    options, for Caffe files converted here.
    """
    sources = {"prototxt": prototxt, "weights": weights, "mean": mean, "labels": labels, "train_val": train_val}
    with open_model(model, **sources, overrides=overrides) as opened:
        if opened.onnx is None:
            return Report(opened.name, list(opened.findings), {"count": 0}, notes=list(opened.notes))
        caller_scores = _load_blobs(scores)
        report = _diagnose_onnx(opened.onnx, opened.name, images, _load_blobs(blobs), expect, caller_scores)
        report.notes.extend(opened.notes)
        return report


def _load_blobs(blobs: np.ndarray | PathLike | None) -> np.ndarray | None:
    if blobs is None or isinstance(blobs, np.ndarray):
        return blobs
    return load_blob_file(blobs)


def load_blob_file(blobs: PathLike) -> np.ndarray:
    """A user's batch from a .npy file (numbers only: no pickles from strangers)."""
    path = Path(blobs)
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DecoderError("no such blob file", path) from None
    except (OSError, ValueError) as exc:
        raise DecoderError(f"not a numpy .npy array ({exc})", path) from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise DecoderError("expected a numeric .npy array of shape (N, C, H, W)", path)
    return array


@dataclasses.dataclass
class _Loaded:
    runner: Any
    spec: PreprocessSpec | None
    score_output: str
    score_is_softmax: bool
    layer_types: list[str]
    labels: tuple[str, ...]
    weights: list[Any]
    kind_reason: str = ""  # why the model is not a classifier; "" for a classifier

    def predict(self, blob: np.ndarray) -> np.ndarray:
        """Top-1 class per input (no per-layer statistics)."""
        return run_forward(self.runner, blob, self.score_output, self.score_is_softmax, stats=False).predictions


def _load(path: Path) -> _Loaded:
    from decoder.intermediates import LayerRunner, load_onnx
    from decoder.runtime import GraphInfo

    model = load_onnx(path)
    runner = LayerRunner(path, model)
    props = dict(runner.session.get_modelmeta().custom_metadata_map)
    shapes = {o.name: list(o.shape) for o in runner.session.get_outputs()}
    graph = GraphInfo.from_metadata(props, list(runner.output_names), str(path), shapes) if GRAPH_KEY in props else None
    if graph is None:
        raise DecoderError("has no decoder layer map (not written by `decode convert`)", path)
    spec = PreprocessSpec.from_metadata(props, str(path)) if SPEC_KEY in props else None
    types = [layer.type for layer in runner.layers]
    layer_of_node = {node: str(entry["name"]) for entry in graph.layers for node in entry.get("nodes", [])}
    tensors = weight_tensors(model, layer_of_node)
    labels = spec.labels if spec else ()
    reason = "" if graph.kind == CLASSIFIER else graph.kind_reason or "its score blob is not one vector per image"
    return _Loaded(runner, spec, graph.score_output, graph.score_is_softmax, types, labels, tensors, reason)


def _diagnose_onnx(
    path: Path,
    name: str,
    images: Sequence[ImageSource] | None,
    blob: np.ndarray | None,
    expect: Any,
    caller_scores: np.ndarray | None = None,
) -> Report:
    loaded = _load(path)
    spec = loaded.spec
    images = list(images) if images is not None else []
    if not images and blob is None:
        raise DecoderError("nothing to diagnose: give images, blobs (--blobs), or both")
    if images and spec is None:
        raise DecoderError("the model carries no image preprocessing, so images cannot be fed; give --blobs", name)
    if loaded.kind_reason and (expect is not None or caller_scores is not None):
        raise DecoderError(
            f"not a classifier ({loaded.kind_reason}): there are no labels or class scores to check", name
        )
    findings: list[Finding] = []
    notes: list[str] = []
    inputs: dict[str, Any] = {"images": len(images)}
    pixels = network_pixels(images, spec) if images and spec is not None else None
    reference = digits_blob(pixels, spec) if pixels is not None and spec is not None else None
    if blob is not None:
        blob = np.asarray(blob, dtype=np.float32)
        require_finite(blob, "--blobs")
        inputs["blob_shape"] = list(blob.shape)
        inputs["blob_range"] = describe_range(blob)
        if spec is not None:
            blob, shape_findings = check_shape(blob, spec)
            findings.extend(shape_findings)
            if blob is None:
                return Report(name, findings, {**inputs, "count": int(inputs["blob_shape"][0])})
        if reference is not None and len(reference) != len(blob):
            raise DecoderError(f"{len(images)} images but {len(blob)} blobs: give them in the same number and order")
    fed = blob if blob is not None else reference
    assert fed is not None
    inputs["count"] = len(fed)
    expected = None if expect is None else expected_indices(list(expect), len(fed), loaded.labels)
    inputs["expected"] = 0 if expected is None else len(expected)

    transform, check = _input_stage(loaded, blob, pixels, reference, findings)
    forward = run_forward(loaded.runner, fed, loaded.score_output, loaded.score_is_softmax)
    ref_forward = None
    if blob is not None and reference is not None:
        ref_forward = run_forward(loaded.runner, reference, loaded.score_output, loaded.score_is_softmax)
    classifier = not loaded.kind_reason
    if classifier:
        findings.extend(outputs.check_constant(forward, loaded.labels, ref_forward, expected))
        findings.extend(outputs.check_saturated(forward, ref_forward))
        findings.extend(outputs.check_double_softmax(forward, loaded.runner.layers, loaded.score_is_softmax))
        findings.extend(heads.check_head(forward, loaded.runner.layers, loaded.score_output))
        if caller_scores is not None:
            findings.extend(heads.check_caller_scores(caller_scores, fed, forward, loaded.runner, loaded.score_output))
    else:
        notes.append(
            f"not a classifier ({loaded.kind_reason}): only the input, layer and weight checks ran; the score, "
            "label and preprocessing-variant checks need one score vector per image"
        )
    findings.extend(activations.check_layers(forward, ref_forward))
    probes = [f for f in (forward, ref_forward) if f is not None] + _probe_forwards(loaded) if classifier else []
    chained = any(f.code == "double-softmax" and f.evidence.get("layers") for f in findings)
    untrained = check_untrained(loaded.weights, [] if chained else probes)
    findings.extend(untrained)

    variants = None
    if classifier and pixels is not None and spec is not None and (expected is not None or blob is not None):

        def score(x: np.ndarray) -> np.ndarray:
            return run_forward(loaded.runner, x, loaded.score_output, loaded.score_is_softmax, False).probabilities

        user_predictions = forward.predictions if blob is not None else None
        variants = run_variants(build_variants(spec, images), pixels, score, expected, user_predictions)
        findings.extend(variant_findings(variants, len(fed), spec, expected, name))

    findings = _scale_hint(findings, spec, name)
    if any(f.severity == "error" for f in untrained):
        stated = stated_settings(spec) if spec is not None else {}
        untrained_findings = _explained_by_untrained(findings)
        return Report(name, untrained_findings, inputs, list(forward.stats), variants, notes=notes, stated=stated)
    repair, repair_check, findings = _repair_stage(
        loaded, transform, check, blob, reference, ref_forward, forward, expected, findings, name
    )
    if spec is not None and transform is not None:
        note = unknown_provenance_note(spec, [d.setting for d in departures(transform, spec)])
        if note:
            notes.append(note)
    findings = _attach_code(findings, spec)
    stated = stated_settings(spec) if spec is not None else {}
    return Report(name, findings, inputs, list(forward.stats), variants, repair, repair_check, notes, stated)


def _scale_hint(findings: list[Finding], spec: PreprocessSpec | None, name: str) -> list[Finding]:
    """A saturated softmax on the stated preprocessing, whose scale was only assumed: the scale may be missing."""
    if spec is None or not is_assumed(spec, "scale"):
        return findings
    hint = (
        f"; the metadata's scale {spec.scale:g} was assumed at conversion: if the model was trained on scaled pixels "
        "(Caffe's MNIST recipe: transform_param scale 0.00390625), rewrite it: "
        + reconvert_hint(spec, "--scale 0.00390625", name)
    )
    return [dataclasses.replace(f, fix=f.fix + hint) if f.code == "saturated-softmax" else f for f in findings]


def _probe_forwards(loaded: _Loaded) -> list[Forward]:
    """The stated preprocessing of 8 synthetic pictures, as is, x1/255 and x255: does anything move the scores?"""
    spec = loaded.spec
    if spec is None:
        return []
    rng = np.random.default_rng(0)
    shape = (8, spec.channels, spec.height, spec.width)
    ramp = np.linspace(0.0, 1.0, spec.width, dtype=np.float32)
    pixels = rng.uniform(0, 255, (8, spec.channels, 1, 1)).astype(np.float32) * ramp + rng.uniform(0, 60, shape)
    blob = digits_blob(np.clip(pixels, 0, 255).astype(np.float32), spec)
    return [
        run_forward(loaded.runner, b, loaded.score_output, loaded.score_is_softmax, stats=False)
        for b in (blob, blob / 255, blob * 255)
    ]


def _explained_by_untrained(findings: list[Finding]) -> list[Finding]:
    """With untrained weights, output symptoms are the weights' doing and input mistakes cannot be measured."""
    out = []
    for finding in findings:
        if finding.code in UNTRAINED_SYMPTOMS or (finding.code == "dead-layer" and finding.severity != "error"):
            continue
        if finding.code in INPUT_CODES and finding.severity == "error":
            finding = dataclasses.replace(finding, severity="warning")
        if finding.code == "expected-labels":
            finding = dataclasses.replace(finding, severity="info", fix="")
        out.append(finding)
    return out


def _input_stage(
    loaded: _Loaded,
    blob: np.ndarray | None,
    pixels: np.ndarray | None,
    reference: np.ndarray | None,
    findings: list[Finding],
) -> tuple[BlobTransform | None, PixelCheck | None]:
    """How the user's blob relates to the stated preprocessing, and the pixels to the training mean (adds findings)."""
    spec = loaded.spec
    if spec is None:
        return None, None
    transform = None
    source = "images"
    if blob is not None:
        transform = fit_with_pixels(blob, pixels, spec) if pixels is not None else None
        if transform is None:
            transform, source = infer_from_blob(blob, spec), "pixels of your blobs"
        first_type = loaded.layer_types[0] if loaded.layer_types else ""
        findings.extend(transform_findings(transform, spec, blob, reference, first_type))
    check = None
    if pixels is not None:
        check = check_pixels(pixels, spec, check_channels=False)
    elif transform is not None and blob is not None:
        check = check_pixels(transform.pixels_from(blob, spec), spec, check_channels=True)
    findings.extend(pixel_findings(check, source))
    return transform, check


def _repair_stage(
    loaded: _Loaded,
    transform: BlobTransform | None,
    check: PixelCheck | None,
    blob: np.ndarray | None,
    reference: np.ndarray | None,
    ref_forward: Forward | None,
    forward: Forward,
    expected: np.ndarray | None,
    findings: list[Finding],
    name: str,
) -> tuple[Repair | None, dict[str, Any], list[Finding]]:
    """The repair of the user's blob (or of the stated blob of inverted images), measured before it is offered.

    With expected labels the candidates are judged on them (:func:`~decoder.diagnosis.departures.judge`);
    without, a setting the conversion only assumed is kept as the user has it.
    """
    spec = loaded.spec
    if spec is None:
        return None, {}, findings
    if transform is not None and blob is not None:
        inverted, swapped = bool(check and check.inverted), bool(check and check.swapped)
        full = Repair(transform, spec, invert_pixels=inverted, reverse_channels=swapped)
        if not _changes_something(full, findings):
            return None, {}, findings
        deps = departures(transform, spec)
        if expected is not None:
            judgement = judge(full, deps, blob, forward.predictions, expected, loaded.predict, findings, name)
            if judgement.repair is None:
                return None, {}, judgement.findings
            repair = judgement.repair
            findings = judgement.findings
        else:
            kept = [d for d in deps if is_assumed(spec, d.setting)]
            findings = hedge_assumed(findings, spec, deps, name)
            repair = dataclasses.replace(full, target=adopt(spec, kept)) if kept else full
            if kept and not _moves(repair, blob):
                return None, {}, findings
        return repair, _verify(repair, blob, reference, ref_forward, expected, loaded), findings
    if check is not None and check.inverted and reference is not None:
        identity = BlobTransform(spec.scale, -spec.scale, 0.0, spec.mean_kind, False, "chw", 0.0, "images")
        repair = Repair(identity, spec, invert_pixels=True)
        return repair, _verify(repair, reference, None, None, expected, loaded), findings
    return None, {}, findings


def _moves(repair: Repair, blob: np.ndarray) -> bool:
    """Does the repair change the blob beyond float rounding?"""
    fixed = repair.apply(blob)
    return float(np.abs(fixed - blob).max()) > 1e-4 * max(float(np.abs(blob).max()), 1.0)


def _changes_something(repair: Repair, findings: list[Finding]) -> bool:
    """A repair is worth offering when some input finding is an error or warning."""
    return any(f.code in INPUT_CODES and f.severity != "info" for f in findings) or repair.invert_pixels


def _verify(
    repair: Repair,
    blob: np.ndarray | None,
    reference: np.ndarray | None,
    ref_forward: Forward | None,
    expected: np.ndarray | None,
    loaded: _Loaded,
) -> dict[str, Any]:
    """Run the repaired blob through the network: the fix is only offered with its measured effect."""
    if blob is None:
        return {}
    fixed = repair.apply(blob)
    forward = run_forward(loaded.runner, fixed, loaded.score_output, loaded.score_is_softmax, stats=False)
    check: dict[str, Any] = {
        "distinct_labels": len(np.unique(forward.predictions)),
        "logit_spread": round(outputs.logit_spread(forward.logits), 4),
    }
    if expected is not None:
        check["accuracy"] = round(float(np.mean(forward.predictions == expected)), 4)
    if reference is not None and repair.target is None:
        check["max_difference_from_digits"] = float(np.abs(fixed - reference).max())
        if ref_forward is None:
            ref_forward = run_forward(loaded.runner, reference, loaded.score_output, loaded.score_is_softmax, False)
        check["agreement_with_digits"] = round(float(np.mean(forward.predictions == ref_forward.predictions)), 4)
    return check


def _attach_code(findings: list[Finding], spec: PreprocessSpec | None) -> list[Finding]:
    """Give the first input error the model's preprocessing as numpy and pycaffe code."""
    if spec is None:
        return findings
    for index, finding in enumerate(findings):
        if finding.code in INPUT_CODES and finding.severity == "error":
            findings[index] = dataclasses.replace(finding, numpy=numpy_snippet(spec), pycaffe=pycaffe_snippet(spec))
            break
    return findings
