"""`decode attach MODEL.onnx -o OUT.onnx`: preprocessing and labels for an ONNX made elsewhere."""

from __future__ import annotations

from pathlib import Path

import click

from decoder.spec import CHANNEL_ORDERS, RESIZE_MODES


@click.command()
@click.argument("model", type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(), help="The .onnx to write (may be MODEL itself).")
@click.option("--mean", type=click.Path(), help="Mean image or pixel: mean.binaryproto or a .npy (C,H,W) / (C,).")
@click.option("--mean-values", help="Mean pixel in the net's channel order, e.g. 104,117,123.")
@click.option("--labels", type=click.Path(), help="labels.txt (one label per line).")
@click.option("--resize-mode", type=click.Choice(RESIZE_MODES), default="squash", show_default=True)
@click.option(
    "--channel-order",
    type=click.Choice(CHANNEL_ORDERS),
    default="BGR",
    show_default=True,
    help="Channel order the net expects (Caffe nets: BGR).",
)
@click.option("--scale", type=float, default=1.0, show_default=True, help="Multiply the de-meaned pixels by this.")
@click.option("--score-output", help="Output holding the class scores [default: last in sorted order, as Caffe].")
def attach(
    model: str,
    output: str,
    mean: str | None,
    mean_values: str | None,
    labels: str | None,
    resize_mode: str,
    channel_order: str,
    scale: float,
    score_output: str | None,
) -> int:
    """Write MODEL with the preprocessing and labels `decode` needs, so it predicts like ours."""
    from decoder.attach import attach as run_attach
    from decoder.errors import DecoderError
    from decoder.sources import read_labels

    try:
        values = tuple(float(v) for v in mean_values.split(",")) if mean_values else ()
    except ValueError:
        raise DecoderError(f"--mean-values {mean_values!r} is not a comma-separated list of numbers") from None
    spec = run_attach(
        model,
        output,
        mean=mean,
        mean_values=values,
        labels=read_labels(Path(labels)) if labels else (),
        resize_mode=resize_mode,
        channel_order=channel_order,
        scale=scale,
        score_output=score_output,
    )
    click.echo(
        f"wrote {output}: input {spec.input_name} {spec.channels}x{spec.height}x{spec.width}, {spec.resize_mode}, "
        f"mean {spec.mean_kind}, scale {spec.scale:g}, {len(spec.labels)} labels"
    )
    return 0
