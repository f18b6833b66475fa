"""`decode visualize IMAGE... --model M.onnx -o OUTDIR`: filters, activations and statistics as pictures."""

from __future__ import annotations

import time

import click

from decoder.cli.options import model_option

#: Flag lines printed on the terminal; the rest are in index.html and stats.json.
SHOWN_FLAGS = 8


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@model_option
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Folder for the pictures.")
@click.option(
    "--all",
    "draw_all",
    is_flag=True,
    help="Draw every convolution's filters and every layer's activations (default: a bounded selection).",
)
def visualize(images: tuple[str, ...], model_path: str, output: str, draw_all: bool) -> int:
    """Draw the first IMAGE's pass through the model: filters, activations, statistics, index.html, stats.json.

    By default the input, the first 2 convolutions' filters and 16 evenly spaced layers'
    activations (first 16 channels) are drawn; every layer's statistics are in the page.
    Statistics cover every IMAGE: units that stay zero are called dead only over 8 or more.
    Needs matplotlib: pip install 'caffe-decoder[viz]'.
    """
    from decoder.visualization import write_report

    start = time.perf_counter()
    report = write_report(model_path, list(images), output, draw_all=draw_all)
    prediction = report.forward.prediction
    if prediction is not None:
        click.echo(f"{report.forward.image}: {prediction.label} ({100 * prediction.probability:.2f}%)")
    click.echo(
        f"wrote {report.index} ({len(report.pictures)} pictures, statistics of {len(report.stats)} blobs over "
        f"{len(report.forward.images)} input(s)) and {report.stats_json} in {time.perf_counter() - start:.1f} s"
    )
    flagged = [(stat, flag) for stat in report.stats for flag in stat.flags]
    for stat, flag in flagged[:SHOWN_FLAGS]:
        click.echo(f"  {stat.layer} {stat.top!r}: {flag}")
    if len(flagged) > SHOWN_FLAGS:
        click.echo(f"  ... {len(flagged) - SHOWN_FLAGS} more flags in {report.index.name}")
    return 0
