"""`decode visualize IMAGE --model M.onnx -o OUTDIR`: filters, activations and statistics as pictures."""

from __future__ import annotations

import click

from decoder.cli.options import model_option


@click.command()
@click.argument("image", type=click.Path(dir_okay=False))
@model_option
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Folder for the pictures.")
def visualize(image: str, model_path: str, output: str) -> int:
    """Draw IMAGE's pass through the model: filters, activations, histograms, index.html, stats.json.

    Needs matplotlib: pip install 'decoder[viz]'.
    """
    from decoder.visualization import write_report

    report = write_report(model_path, image, output)
    prediction = report.forward.prediction
    if prediction is not None:
        click.echo(f"{report.forward.image}: {prediction.label} ({100 * prediction.probability:.2f}%)")
    pictures = 1 + len(report.filters) + sum(a is not None for a in report.activations) + len(report.histograms)
    click.echo(f"wrote {report.index} ({pictures} pictures, {len(report.stats)} blobs) and {report.stats_json}")
    for stat in report.stats:
        for flag in stat.flags:
            click.echo(f"  {stat.layer} {stat.top!r}: {flag}")
    return 0
