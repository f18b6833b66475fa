"""`decode attach MODEL.onnx -o OUT.onnx`: write or edit the preprocessing and labels of an ONNX model."""

from __future__ import annotations

from pathlib import Path

import click

from decoder.cli.options import parse_mean_values, preprocessing_options
from decoder.cli.settings import settings_lines


@click.command()
@click.argument("model", type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(), help="The .onnx to write (may be MODEL itself).")
@preprocessing_options(input_shape=False)
def attach(
    model: str,
    output: str,
    labels: str | None,
    mean: str | None,
    mean_values: str | None,
    mean_kind: str | None,
    scale: float | None,
    channel_order: str | None,
    resize_mode: str | None,
    score_output: str | None,
) -> int:
    """Write MODEL with the preprocessing and labels `decode` needs, so it predicts like ours.

    On a model that already carries them (one written by `decode convert` or `attach`),
    only the settings passed change; every other one is kept from the file.
    """
    from decoder.attach import AttachEdits
    from decoder.attach import attach as run_attach
    from decoder.sources import read_labels

    edits = AttachEdits(
        mean=mean,
        mean_values=parse_mean_values(mean_values),
        mean_kind=mean_kind,
        labels=read_labels(Path(labels)) if labels else None,
        labels_file=Path(labels).name if labels else "",
        resize_mode=resize_mode,
        channel_order=channel_order,
        scale=scale,
        score_output=score_output,
    )
    spec, score = run_attach(model, output, edits)
    click.echo(f"wrote {output}")
    for line in settings_lines(spec, score):
        click.echo(f"  {line}")
    for key, phrase in spec.assumed().items():
        click.echo(f"WARNING: {key.replace('_', ' ')} {phrase}", err=True)
    return 0
