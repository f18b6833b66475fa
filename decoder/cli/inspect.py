"""`decode inspect MODEL`: the preprocessing a model is fed with, and each layer's type, shape and cost."""

from __future__ import annotations

import json

import click

from decoder.cli.options import conversion_overrides, preprocessing_options


@click.command()
@click.argument("model")
@click.option("--weights", type=click.Path(dir_okay=False), help="caffemodel for a bare deploy prototxt (optional).")
@preprocessing_options(input_shape=True)
@click.option("--json", "as_json", is_flag=True, help="Print the preprocessing and the table as one JSON object.")
def inspect(
    model: str,
    weights: str | None,
    input_shape: str | None,
    labels: str | None,
    mean: str | None,
    mean_values: str | None,
    mean_kind: str | None,
    scale: float | None,
    channel_order: str | None,
    resize_mode: str | None,
    score_output: str | None,
    as_json: bool,
) -> int:
    """Show MODEL's preprocessing (with where each setting came from), labels and layers.

    MODEL is a .onnx, a deploy.prototxt (with --weights for the preprocessing), a DIGITS
    archive or a folder; Caffe sources are converted as `decode convert` would, with the
    same options.
    """
    from decoder.inspection import format_inspection, inspect_path

    overrides = conversion_overrides(
        mean_kind=mean_kind,
        mean_values=mean_values,
        resize_mode=resize_mode,
        scale=scale,
        channel_order=channel_order,
        input_shape=input_shape,
        score_output=score_output,
    )
    result = inspect_path(model, weights, overrides, mean=mean, labels=labels)
    click.echo(json.dumps(result.to_dict()) if as_json else format_inspection(result))
    return 0
