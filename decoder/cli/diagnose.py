"""`decode diagnose --model M [IMAGES...] [--blobs X.npy] [--expect LABELS]`: why predictions are wrong.

Prints the findings (code, severity, message, fix), the repair of the user's blobs and
the model's stated preprocessing as code, and a one-line PASSED/FAILED verdict; `--json` prints the
same report as one JSON object. The exit status is 0 whenever a diagnosis was made
(whatever it found), 2 for unusable input.
"""

from __future__ import annotations

import click

from decoder.cli.options import Preprocessing, preprocessing_options


@click.command()
@click.argument("images", nargs=-1)
@click.option("--model", "-m", type=click.Path(), help="A .onnx from `decode convert`, or a DIGITS archive / folder.")
@click.option("--prototxt", type=click.Path(), help="Deploy prototxt (Caffe files instead of --model).")
@click.option("--weights", type=click.Path(), help="Trained .caffemodel.")
@click.option("--train-val", type=click.Path(), help="train_val.prototxt (tells the mean kind).")
@preprocessing_options(input_shape=True)
@click.option(
    "--blobs",
    type=click.Path(dir_okay=False),
    help="A .npy of what your code fed the network: float32 (N, C, H, W), in the order of IMAGES.",
)
@click.option(
    "--scores",
    type=click.Path(dir_okay=False),
    help="A .npy of the scores your code read out for the same inputs (N, K): checks the blob and the softmax.",
)
@click.option("--expect", help="Expected labels: a file of `path label` lines, or `folders` (each image's folder).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--layers", "show_layers", is_flag=True, help="Also print per-layer activation statistics.")
def diagnose(
    images: tuple[str, ...],
    model: str | None,
    prototxt: str | None,
    weights: str | None,
    train_val: str | None,
    blobs: str | None,
    scores: str | None,
    expect: str | None,
    as_json: bool,
    show_layers: bool,
    preprocessing: Preprocessing,
) -> int:
    """Explain constant or wrong predictions: input range, mean, channels, layout, polarity, weights, layers.

    Your blobs are measured against the preprocessing the model's metadata states; where a
    setting was only assumed at conversion and your blobs do better with the expected
    labels, it says the metadata may be wrong and how to reconvert.
    """
    from decoder.cli.inputs import expand_images
    from decoder.diagnosis.expect import load_expected_names
    from decoder.diagnosis.run import diagnose as run_diagnosis
    from decoder.errors import DecoderError

    paths = expand_images(list(images)) if images else []
    expected = None
    if expect is not None:
        if not paths:
            raise DecoderError("--expect needs the IMAGES the labels belong to")
        expected = load_expected_names(expect, paths)
    report = run_diagnosis(
        model,
        images=[str(p) for p in paths] or None,
        blobs=blobs,
        scores=scores,
        expect=expected,
        prototxt=prototxt,
        weights=weights,
        mean=preprocessing.mean,
        labels=preprocessing.labels,
        train_val=train_val,
        overrides=preprocessing.overrides(),
    )
    click.echo(report.to_json() if as_json else report.format(show_layers=show_layers))
    return 0
