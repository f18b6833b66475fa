"""`decode IMAGE... --model M`: labels, probabilities and top-k, as text or JSON lines."""

from __future__ import annotations

import json

import click

from decoder.cli.inputs import expand_images
from decoder.decoding import Prediction
from decoder.errors import DecoderError


def format_prediction(prediction: Prediction) -> str:
    """DIGITS-style text: the label with its percentage rounded to 2 places, then the top-k."""
    lines = [f"{prediction.image}: {prediction.label} ({100 * prediction.probability:.2f}%)"]
    width = max(len(r.label) for r in prediction.top_k)
    for rank, entry in enumerate(prediction.top_k, 1):
        lines.append(f"  {rank}. {entry.label:<{width}}  {100 * entry.probability:6.2f}%")
    return "\n".join(lines)


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option(
    "--model",
    "-m",
    "model_path",
    required=True,
    envvar="DECODER_MODEL",
    type=click.Path(dir_okay=False),
    help="A .onnx written by `decode convert` (env DECODER_MODEL).",
)
@click.option("--top-k", "-k", default=5, show_default=True, type=click.IntRange(1), help="How many classes to list.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of text.")
@click.option(
    "--batch-size", default=64, show_default=True, type=click.IntRange(1), help="Images per ONNX Runtime call."
)
@click.option("--strict", is_flag=True, help="Stop at the first unreadable image instead of skipping it.")
def predict(images: tuple[str, ...], model_path: str, top_k: int, as_json: bool, batch_size: int, strict: bool) -> int:
    """Classify IMAGES (files or folders) with DIGITS's preprocessing and labels."""
    from decoder.runtime import Model

    model = Model.load(model_path)
    paths = expand_images(list(images))
    failures: list[DecoderError] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        good, blobs = [], []
        for path in chunk:
            try:
                blobs.append(model.preprocess([path]))
                good.append(path)
            except DecoderError as exc:
                if strict:
                    raise
                failures.append(exc)
                click.echo(f"decode: error: {exc}", err=True)
        if not good:
            continue
        import numpy as np

        from decoder.decoding import decode

        probabilities = model.probabilities(np.concatenate(blobs))
        for prediction in decode(probabilities, model.labels, [str(p) for p in good], top_k):
            click.echo(json.dumps(prediction.to_dict()) if as_json else format_prediction(prediction))
    if failures:
        click.echo(f"decode: {len(failures)} of {len(paths)} image(s) could not be read", err=True)
        return 2
    return 0
