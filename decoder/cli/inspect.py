"""`decode inspect MODEL`: the preprocessing a model is fed with, and each layer's type, shape and cost."""

from __future__ import annotations

import json

import click

from decoder.cli.options import Preprocessing, preprocessing_options


@click.command()
@click.argument("model")
@click.option("--weights", type=click.Path(dir_okay=False), help="caffemodel for a bare deploy prototxt (optional).")
@preprocessing_options(input_shape=True)
@click.option("--json", "as_json", is_flag=True, help="Print the preprocessing and the table as one JSON object.")
def inspect(
    model: str,
    weights: str | None,
    as_json: bool,
    preprocessing: Preprocessing,
) -> int:
    """Show MODEL's preprocessing (with where each setting came from), labels and layers.

    MODEL is a .onnx, a deploy.prototxt (with --weights for the preprocessing), a DIGITS
    archive or a folder; Caffe sources are converted as `decode convert` would, with the
    same options.
    """
    from decoder.inspection import format_inspection, inspect_path

    result = inspect_path(
        model, weights, preprocessing.overrides(), mean=preprocessing.mean, labels=preprocessing.labels
    )
    click.echo(json.dumps(result.to_dict()) if as_json else format_inspection(result))
    return 0
