"""`decode convert SOURCE -o model.onnx`: a DIGITS archive, job folder or Caffe files to one .onnx."""

from __future__ import annotations

from pathlib import Path

import click

from decoder.spec import MEAN_KINDS, RESIZE_MODES


@click.command()
@click.argument("source", required=False, type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(), help="The .onnx file to write.")
@click.option("--prototxt", type=click.Path(), help="Deploy prototxt (instead of, or overriding, SOURCE's).")
@click.option("--weights", type=click.Path(), help="Trained .caffemodel.")
@click.option("--mean", type=click.Path(), help="mean.binaryproto.")
@click.option("--labels", type=click.Path(), help="labels.txt (one label per line).")
@click.option("--train-val", type=click.Path(), help="train_val.prototxt (tells mean kind, crop, scale).")
@click.option("--mean-kind", type=click.Choice(MEAN_KINDS), help="Override: subtract the mean image, pixel or none.")
@click.option("--resize-mode", type=click.Choice(RESIZE_MODES), help="Override DIGITS's resize mode.")
@click.option("--scale", type=float, help="Override: multiply the de-meaned pixels by this.")
@click.option("--opset", type=click.IntRange(13), help="ONNX opset to write (default 17).")
def convert(
    source: str | None,
    output: str,
    prototxt: str | None,
    weights: str | None,
    mean: str | None,
    labels: str | None,
    train_val: str | None,
    mean_kind: str | None,
    resize_mode: str | None,
    scale: float | None,
    opset: int | None,
) -> int:
    """Convert SOURCE (DIGITS archive, job folder, or folder with prototxt + caffemodel) to ONNX."""
    from decoder.conversion import convert as run_conversion
    from decoder.errors import DecoderError
    from decoder.sources import open_sources

    if source is None and not (prototxt and weights):
        raise DecoderError("give a DIGITS archive or folder, or both --prototxt and --weights")
    overrides = {"mean_kind": mean_kind, "resize_mode": resize_mode, "scale": scale}
    with open_sources(
        source, prototxt=prototxt, weights=weights, mean=mean, labels=labels, train_val=train_val
    ) as sources:
        report = run_conversion(sources, Path(output), opset=opset, overrides=overrides)
    spec = report.spec
    click.echo(f"wrote {report.output}: {report.layer_count} layers, outputs {', '.join(report.outputs)}")
    if spec is not None:
        mean_text = {"image": "mean image", "pixel": "mean pixel", "none": "no mean"}[spec.mean_kind]
        click.echo(
            f"  input {spec.input_name}: {spec.channels}x{spec.height}x{spec.width}, {spec.resize_mode}, "
            f"{'BGR' if spec.channels == 3 and spec.channel_order == 'BGR' else 'as loaded'}, {mean_text}, "
            f"scale {spec.scale:g}, {len(spec.labels)} labels; scores from {report.score_output!r}"
        )
    for note in report.notes:
        click.echo(f"  note: {note}", err=True)
    return 0
