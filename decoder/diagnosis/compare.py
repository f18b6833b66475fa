"""`decode compare`: run a converted model layer by layer beside a reference; name the first divergence.

References:

- OpenCV 4's ``cv2.dnn.readNetFromCaffe`` of the original prototxt + caffemodel, an
  independent Caffe implementation (``net.forward(list of layer names)``, fusion off so
  every layer's own output is seen);
- another .onnx written by `decode convert` (layers matched by Caffe layer name);
- the same model fed a second blob (e.g. the user's preprocessing against DIGITS's).

A layer diverges when ``max |ours - reference| > tolerance * max |reference|`` (relative
to the reference's largest magnitude, so softmax and logits are judged alike).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from decoder.errors import DecoderError
from decoder.preprocess import ImageSource

PathLike = str | os.PathLike[str]
#: Default relative tolerance: float32 reorderings stay far below it, a wrong weight far above.
TOLERANCE = 1e-4
#: Inputs fed when the user gives neither images nor blobs.
SYNTHETIC_INPUTS = 4

Runner = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class LayerDiff:
    """One layer's output, ours against the reference's."""

    name: str
    type: str
    shape: tuple[int, ...]
    max_abs: float
    relative: float  # max_abs / max |reference|
    reference_max: float
    diverged: bool

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["shape"] = list(self.shape)
        return data


@dataclass
class Comparison:
    """The layer-by-layer outcome; ``first_divergence`` is None when every layer agrees."""

    model: str
    reference: str
    input_source: str
    inputs: int
    tolerance: float
    layers: list[LayerDiff] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # our layers the reference has no output for
    prediction_agreement: float | None = None

    @property
    def first_divergence(self) -> LayerDiff | None:
        return next((layer for layer in self.layers if layer.diverged), None)

    @property
    def passed(self) -> bool:
        return self.first_divergence is None

    @property
    def verdict(self) -> str:
        first = self.first_divergence
        if first is None:
            worst = max((layer.relative for layer in self.layers), default=0.0)
            return (
                f"PASSED: {len(self.layers)} layers agree within {self.tolerance:g} "
                f"(largest relative difference {worst:.2g}) on {self.inputs} input(s)"
            )
        return (
            f"FAILED: first divergence at layer {first.name!r} ({first.type}): max |difference| {first.max_abs:.4g}, "
            f"{first.relative:.3g} of the reference's largest value (tolerance {self.tolerance:g})"
        )

    def to_dict(self) -> dict[str, Any]:
        first = self.first_divergence
        return {
            "verdict": self.verdict,
            "passed": self.passed,
            "model": self.model,
            "reference": self.reference,
            "input_source": self.input_source,
            "inputs": self.inputs,
            "tolerance": self.tolerance,
            "first_divergence": None if first is None else first.name,
            "prediction_agreement": self.prediction_agreement,
            "layers": [layer.to_dict() for layer in self.layers],
            "missing_in_reference": self.missing,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def format(self) -> str:
        lines = [
            f"model:     {self.model}",
            f"reference: {self.reference}",
            f"inputs:    {self.inputs} ({self.input_source})",
            "",
            f"    {'layer':<18} {'type':<14} {'shape':<16} {'max |diff|':>11} {'relative':>10}",
        ]
        first = self.first_divergence
        for layer in self.layers:
            shape = "x".join(map(str, layer.shape))
            mark = "  <- first divergence" if layer is first else ("  diverges" if layer.diverged else "")
            lines.append(
                f"    {layer.name[:18]:<18} {layer.type[:14]:<14} {shape[:16]:<16} {layer.max_abs:11.4g} "
                f"{layer.relative:10.3g}{mark}"
            )
        if self.missing:
            lines.append(f"not in the reference: {', '.join(self.missing)}")
        if self.prediction_agreement is not None:
            lines.append(f"same top-1 class for {100 * self.prediction_agreement:.1f}% of the inputs")
        lines += ["", self.verdict]
        return "\n".join(lines)


def compare_outputs(
    ours: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    layer_types: Sequence[tuple[str, str]],
    tolerance: float = TOLERANCE,
) -> tuple[list[LayerDiff], list[str]]:
    """Per-layer differences, in network order, for the layers both sides produced."""
    diffs: list[LayerDiff] = []
    missing: list[str] = []
    for name, kind in layer_types:
        if name not in ours:
            continue
        if name not in reference:
            missing.append(name)
            continue
        a = np.asarray(ours[name], dtype=np.float64)
        b = np.asarray(reference[name], dtype=np.float64)
        if a.size != b.size:
            raise DecoderError(f"layer {name!r}: our output has shape {list(a.shape)}, the reference's {list(b.shape)}")
        b = b.reshape(a.shape)
        difference = np.abs(a - b)
        max_abs = float(np.nanmax(difference)) if difference.size else 0.0
        if not np.array_equal(np.isnan(a), np.isnan(b)):
            max_abs = math.inf
        scale = float(np.nanmax(np.abs(b))) if b.size else 0.0
        relative = max_abs / max(scale, 1e-12) if max_abs else 0.0
        diffs.append(LayerDiff(name, kind, tuple(a.shape[1:]), max_abs, relative, scale, relative > tolerance))
    return diffs, missing


def opencv_runner(
    prototxt: PathLike,
    caffemodel: PathLike,
    names: Sequence[str],
    input_shape: tuple[int, int, int] | None = None,
) -> tuple[Runner, str]:
    """A runner returning OpenCV's output of every named layer it knows (the net fed as it is converted).

    A train/test net is given to OpenCV as the deploy net conversion made of it
    (``input_shape`` where its data layer does not state the size).
    """
    from decoder.opencv_caffe import deploy_for_opencv, forward, load_opencv_net

    with deploy_for_opencv(prototxt, caffemodel, input_shape) as deploy:
        loaded = load_opencv_net(deploy, caffemodel, shown=prototxt)
    known = set(loaded.net.getLayerNames())
    wanted = [n for n in names if n in known]
    if len(loaded.inputs) > 1:
        raise DecoderError(
            f"the net reads {len(loaded.inputs)} inputs ({', '.join(loaded.inputs)}); comparing needs one", prototxt
        )

    def run(blob: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {loaded.inputs[0] if loaded.inputs else "": np.ascontiguousarray(blob, dtype=np.float32)}
        return dict(zip(wanted, forward(loaded, feeds, wanted), strict=True))

    return run, loaded.description


def onnx_runner(path: PathLike) -> tuple[Runner, list[tuple[str, str]]]:
    """A runner returning each Caffe layer's first top from a converted .onnx, and its layer list."""
    from decoder.intermediates import LayerRunner

    runner = LayerRunner(path)

    def run(blob: np.ndarray) -> dict[str, np.ndarray]:
        return {name: tops[0] for name, tops in runner.run_layers(blob).items() if tops}

    return run, [(layer.name, layer.type) for layer in runner.layers]


def compare(
    model: PathLike | None,
    images: Sequence[ImageSource] | None = None,
    blobs: np.ndarray | None = None,
    *,
    caffe: PathLike | None = None,
    prototxt: PathLike | None = None,
    weights: PathLike | None = None,
    against: PathLike | None = None,
    against_blobs: np.ndarray | None = None,
    tolerance: float = TOLERANCE,
    overrides: dict[str, object] | None = None,
    files: dict[str, PathLike | None] | None = None,
) -> Comparison:
    """Compare ``model`` layer by layer with a reference and name the first diverging layer.

    ``model`` is a .onnx or Caffe sources (converted on the fly; None with ``prototxt`` +
    ``weights`` converts those). The reference is, in order of precedence: ``against``
    (another .onnx), ``against_blobs`` (the same model fed this second batch), the Caffe
    files ``caffe`` (archive or folder) or ``prototxt`` + ``weights`` run by OpenCV, or the
    model's own Caffe files run by OpenCV. The input is ``blobs``, else DIGITS's
    preprocessing of ``images``, else seeded random pixels through DIGITS's preprocessing.
    ``overrides``: `decode convert`'s preprocessing options, for Caffe files converted here
    (``input_shape`` also sizes the net OpenCV is given); ``files``: its ``mean``, ``labels``
    and ``train_val`` files.
    """
    from decoder.diagnosis.opening import open_model
    from decoder.sources import open_sources

    given = {key: value for key, value in (files or {}).items() if value is not None}
    caffe_reference = caffe is not None or (model is not None and (prototxt is not None or weights is not None))
    with contextlib.ExitStack() as stack:
        if model is None:
            caffe_files = {"prototxt": prototxt, "weights": weights, **given}
            opened = stack.enter_context(open_model(None, overrides=overrides, **caffe_files))
        else:
            opened = stack.enter_context(open_model(model, overrides=overrides, **given))
        if opened.onnx is None:
            names = ", ".join(repr(f.evidence.get("layer", "?")) for f in opened.findings)
            raise DecoderError(f"cannot convert: layer(s) {names} have no trained weights (see `decode diagnose`)")
        run, layers = onnx_runner(opened.onnx)
        blob, source = _input_blob(opened.onnx, images, blobs)
        ours = run(blob)
        if against is not None:
            other, _ = onnx_runner(against)
            reference, description = other(blob), f"{against} (ONNX Runtime)"
        elif against_blobs is not None:
            second = np.asarray(against_blobs, dtype=np.float32)
            second = second[np.newaxis] if second.ndim == 3 else second
            if second.shape != blob.shape:
                raise DecoderError(f"the second blob has shape {list(second.shape)}, the first {list(blob.shape)}")
            reference, description = run(second), "the same model fed the second blob"
        else:
            if caffe_reference:
                sources = stack.enter_context(open_sources(caffe, prototxt=prototxt, weights=weights))
            elif opened.sources is not None:
                sources = opened.sources
            else:
                raise DecoderError(
                    "name a reference: --caffe SOURCE (or --prototxt and --weights), --against OTHER.onnx, "
                    "or --against-blobs B.npy"
                )
            names = [name for name, _ in layers]
            input_shape = (overrides or {}).get("input_shape")
            opencv, description = opencv_runner(sources.prototxt, sources.caffemodel, names, input_shape)  # type: ignore[arg-type]
            reference = opencv(blob)
        diffs, missing = compare_outputs(ours, reference, layers, tolerance)
        result = Comparison(str(opened.name), description, source, len(blob), tolerance, diffs, missing)
        last = layers[-1][0] if layers else None
        if last and last in ours and last in reference:
            a = np.asarray(ours[last]).reshape(len(blob), -1)
            b = np.asarray(reference[last]).reshape(len(blob), -1)
            result.prediction_agreement = float(np.mean(a.argmax(1) == b.argmax(1)))
        return result


def _input_blob(path: Path, images: Sequence[ImageSource] | None, blobs: np.ndarray | None) -> tuple[np.ndarray, str]:
    """The batch to feed, and where it came from."""
    from decoder.diagnosis.pixels import digits_blob
    from decoder.runtime import Model

    if blobs is not None:
        blob = np.asarray(blobs, dtype=np.float32)
        return (blob[np.newaxis] if blob.ndim == 3 else blob), "your blobs"
    model = Model.load(path)
    spec = model.spec
    if images:
        return model.preprocess(list(images)), f"DIGITS's preprocessing of {len(images)} image(s)"
    assert spec is not None
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (SYNTHETIC_INPUTS, spec.channels, spec.height, spec.width)).astype(np.float32)
    return digits_blob(pixels, spec), "random pixels through DIGITS's preprocessing (seed 0)"
