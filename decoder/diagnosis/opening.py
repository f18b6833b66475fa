"""The model to diagnose: a converted .onnx, or Caffe sources converted on the fly.

`decode diagnose` and `decode compare` accept what `decode convert` accepts (a DIGITS
archive, a folder, or prototxt + caffemodel) in place of a .onnx. Those are checked for
deploy layers without trained weights first (the converter would refuse them, and that
is itself the diagnosis), then converted into a temporary folder that lives as long as
the context.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from decoder.diagnosis.findings import Finding
from decoder.errors import DecoderError
from decoder.sources import ModelSources, open_sources

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class OpenedModel:
    """A .onnx ready to run (``onnx`` is None when the Caffe files could not be converted)."""

    onnx: Path | None
    name: str
    sources: ModelSources | None = None
    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


def is_onnx(path: PathLike) -> bool:
    return Path(path).suffix.lower() == ".onnx"


@contextlib.contextmanager
def open_model(
    model: PathLike | None,
    *,
    prototxt: PathLike | None = None,
    weights: PathLike | None = None,
    mean: PathLike | None = None,
    labels: PathLike | None = None,
    train_val: PathLike | None = None,
    overrides: dict[str, object] | None = None,
) -> Iterator[OpenedModel]:
    """Yield an :class:`OpenedModel` for a .onnx or Caffe sources (converted into a temporary folder).

    ``overrides`` are `decode convert`'s preprocessing options (``input_shape``, ``mean_kind``,
    ... as :func:`decoder.conversion.convert` takes them), so that the advice conversion
    gives ("give --input-shape", "give --mean-kind none") works in every command.
    """
    from decoder.conversion import given_overrides

    given = given_overrides(overrides)
    caffe_given = any(v is not None for v in (prototxt, weights, mean, labels, train_val))
    if model is not None and is_onnx(model) and not caffe_given:
        if not Path(model).is_file():
            raise DecoderError("model file not found", model)
        if given:
            raise DecoderError(
                f"{', '.join(given)}: options for converting Caffe files; a .onnx carries its own settings "
                "(`decode attach` changes them)",
                model,
            )
        yield OpenedModel(Path(model), str(model))
        return
    if model is None and not caffe_given:
        raise DecoderError("no model given: pass --model (a .onnx, a DIGITS archive or folder) or --prototxt/--weights")
    from decoder.conversion import convert
    from decoder.diagnosis.weights import check_weights

    with open_sources(
        None if model is None else str(model),
        prototxt=prototxt,
        weights=weights,
        mean=mean,
        labels=labels,
        train_val=train_val,
    ) as sources:
        name = sources.origin or str(sources.prototxt)
        missing = check_weights(sources, (overrides or {}).get("input_shape"))  # type: ignore[arg-type]
        if missing:
            yield OpenedModel(None, name, sources, tuple(missing))
            return
        scratch = Path(tempfile.mkdtemp(prefix="decoder-diagnose-"))
        try:
            report = convert(sources, scratch / "model.onnx", overrides=overrides)
            yield OpenedModel(report.output, name, sources, (), tuple(report.notes))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
