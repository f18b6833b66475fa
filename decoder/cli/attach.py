"""`decode attach MODEL.onnx -o OUT.onnx`: write or edit the preprocessing and labels of an ONNX model."""

from __future__ import annotations

from pathlib import Path

import click

from decoder.cli.options import Preprocessing, parse_mean_values, preprocessing_options
from decoder.cli.settings import settings_lines


@click.command()
@click.argument("model", type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(), help="The .onnx to write (may be MODEL itself).")
@preprocessing_options(input_shape=False)
def attach(
    model: str,
    output: str,
    preprocessing: Preprocessing,
) -> int:
    """Write MODEL with the preprocessing and labels `decode` needs, so it predicts like ours.

    On a model that already carries them (one written by `decode convert` or `attach`),
    only the settings passed change; every other one is kept from the file.
    """
    from decoder.attach import AttachEdits
    from decoder.attach import attach as run_attach
    from decoder.sources import read_labels

    stated = preprocessing
    edits = AttachEdits(
        mean=stated.mean,
        mean_values=parse_mean_values(stated.mean_values),
        mean_kind=stated.mean_kind,
        labels=read_labels(Path(stated.labels)) if stated.labels else None,
        labels_file=Path(stated.labels).name if stated.labels else "",
        resize_mode=stated.resize_mode,
        channel_order=stated.channel_order,
        scale=stated.scale,
        score_output=stated.score_output,
    )
    spec, score = run_attach(model, output, edits)
    click.echo(f"wrote {output}")
    for line in settings_lines(spec, score):
        click.echo(f"  {line}")
    for key, phrase in spec.assumed().items():
        click.echo(f"WARNING: {key.replace('_', ' ')} {phrase}", err=True)
    return 0
