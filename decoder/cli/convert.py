"""`decode convert SOURCE -o model.onnx`: a DIGITS archive, job folder or Caffe files to one .onnx."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from decoder.cli.options import Preprocessing, preprocessing_options
from decoder.cli.settings import settings_lines

if TYPE_CHECKING:
    from decoder.conversion import ConversionReport


@click.command()
@click.argument("source", required=False, type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(), help="The .onnx file to write.")
@click.option("--prototxt", type=click.Path(), help="Deploy (or train/test) prototxt, instead of SOURCE's.")
@click.option("--weights", type=click.Path(), help="Trained .caffemodel.")
@click.option("--train-val", type=click.Path(), help="train_val.prototxt (tells mean kind, crop, scale).")
@preprocessing_options(input_shape=True)
@click.option("--opset", type=click.IntRange(13), help="ONNX opset to write (default 17).")
@click.option("--verify", is_flag=True, help="Compare the .onnx with OpenCV 4's import of the Caffe files.")
def convert(
    source: str | None,
    output: str,
    prototxt: str | None,
    weights: str | None,
    train_val: str | None,
    opset: int | None,
    verify: bool,
    preprocessing: Preprocessing,
) -> int:
    """Convert SOURCE (DIGITS archive, job folder, or folder with prototxt + caffemodel) to ONNX.

    Settings not given are read from the files (train_val.prototxt, info.json, the data
    layer of a train/test prototxt); the summary says where each came from and warns about
    every one it had to assume.
    """
    from decoder.conversion import convert as run_conversion
    from decoder.errors import DecoderError
    from decoder.opencv_caffe import deploy_for_opencv
    from decoder.sources import open_sources

    if source is None and not (prototxt and weights):
        raise DecoderError("give a DIGITS archive or folder, or both --prototxt and --weights")
    overrides = preprocessing.overrides()
    with open_sources(
        source,
        prototxt=prototxt,
        weights=weights,
        mean=preprocessing.mean,
        labels=preprocessing.labels,
        train_val=train_val,
    ) as sources:
        report = run_conversion(sources, Path(output), opset=opset, overrides=overrides)
        _summarise(report)
        if not verify:
            return 0
        with deploy_for_opencv(sources.prototxt, sources.caffemodel, overrides["input_shape"]) as deploy:
            return _verify(Path(output), deploy, sources.caffemodel)


def _summarise(report: ConversionReport) -> None:
    """What was written, each setting with its source (stdout); guesses as WARNING lines and notes (stderr)."""
    spec = report.spec
    click.echo(f"wrote {report.output}: {report.layer_count} layers, outputs {', '.join(report.outputs)}")
    if spec is not None:
        for line in settings_lines(spec, report.score_output):
            click.echo(f"  {line}")
    for line in _head_lines(report):
        click.echo(f"  {line}")
    for note in report.notes:
        click.echo(f"  note: {note}", err=True)
    if spec is not None:
        for key, phrase in spec.assumed().items():
            click.echo(f"WARNING: {key.replace('_', ' ')} {phrase}", err=True)


def _head_lines(report: ConversionReport) -> list[str]:
    """What the score blob is and how the batch is run: the two things a stranger's model may hide."""
    lines = []
    if report.kind != "classifier":
        lines.append(
            f"not a classifier: {report.kind_reason}; `decode IMAGE` refuses it, "
            "`decode run IMAGES -o outputs.npz` gives every output per image"
        )
    elif report.score_note and report.spec is None:  # with a spec, the settings lines name the score blob's source
        lines.append(report.score_note)
    if report.fixed_batch is not None:
        lines.append(
            f"fixed batch {report.fixed_batch}: {'; '.join(report.batch_notes)}; images are run "
            f"{report.fixed_batch} per call, never merged"
        )
    else:
        lines.extend(f"dynamic batch: {note}" for note in report.batch_notes)
    return lines


def _verify(output: Path, prototxt: Path, caffemodel: Path) -> int:
    """Print the largest error per output against OpenCV; 1 when one is off or OpenCV cannot run the files."""
    from decoder.errors import DecoderError
    from decoder.verification import TOLERANCE, verify_conversion

    try:
        checks = verify_conversion(output, prototxt, caffemodel)
    except DecoderError as exc:
        click.echo(f"verify: not done: {exc}", err=True)  # OpenCV's own reason, or how to install OpenCV 4
        return 1
    for check in checks:
        verdict = "ok" if check.passed else f"FAILED (tolerance {TOLERANCE:g})"
        click.echo(
            f"verify: {check.name}: max |ours - OpenCV| {check.max_abs:.3g}, relative {check.relative:.3g} {verdict}"
        )
    return 0 if all(c.passed for c in checks) else 1
