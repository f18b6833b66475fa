"""`decode compare`: a converted model layer by layer against OpenCV's Caffe, another .onnx or another input.

Prints one row per Caffe layer (max |difference|, relative to the reference's largest
value), marks the first layer beyond the tolerance, and ends with a PASSED/FAILED verdict;
`--json` prints the same as one JSON object. Exit status 0 whenever the comparison ran.
"""

from __future__ import annotations

import click

from decoder.cli.options import Preprocessing, preprocessing_options


@click.command()
@click.argument("images", nargs=-1)
@click.option("--model", "-m", type=click.Path(), help="A .onnx, or Caffe sources (archive / folder) to convert.")
@click.option("--caffe", type=click.Path(), help="Reference: the original Caffe model (archive or folder), via OpenCV.")
@click.option("--prototxt", type=click.Path(), help="Reference deploy prototxt (with --weights), via OpenCV.")
@click.option("--weights", type=click.Path(), help="Reference .caffemodel.")
@click.option("--against", type=click.Path(dir_okay=False), help="Reference: another .onnx from `decode convert`.")
@click.option(
    "--against-blobs", type=click.Path(dir_okay=False), help="Reference: the same model fed this second .npy batch."
)
@click.option("--blobs", type=click.Path(dir_okay=False), help="Input: a .npy (N, C, H, W) batch instead of IMAGES.")
@click.option("--train-val", type=click.Path(), help="train_val.prototxt (tells the mean kind), with --prototxt.")
@preprocessing_options(input_shape=True)
@click.option("--tolerance", default=1e-4, show_default=True, type=click.FloatRange(0, min_open=True))
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare(
    images: tuple[str, ...],
    model: str | None,
    caffe: str | None,
    prototxt: str | None,
    weights: str | None,
    against: str | None,
    against_blobs: str | None,
    blobs: str | None,
    train_val: str | None,
    tolerance: float,
    as_json: bool,
    preprocessing: Preprocessing,
) -> int:
    """Name the first layer where MODEL and the reference disagree (IMAGES, --blobs or random pixels as input)."""
    from decoder.cli.inputs import expand_images
    from decoder.diagnosis.compare import compare as run_comparison
    from decoder.diagnosis.run import load_blob_file
    from decoder.errors import DecoderError

    if model is None and not (prototxt and weights):
        raise DecoderError("give --model (a .onnx or Caffe sources), or --prototxt and --weights")
    paths = [str(p) for p in expand_images(list(images))] if images else None
    result = run_comparison(
        model,
        paths,
        None if blobs is None else load_blob_file(blobs),
        caffe=caffe,
        prototxt=prototxt,
        weights=weights,
        against=against,
        against_blobs=None if against_blobs is None else load_blob_file(against_blobs),
        tolerance=tolerance,
        overrides=preprocessing.overrides(),
        files={"mean": preprocessing.mean, "labels": preprocessing.labels, "train_val": train_val},
    )
    click.echo(result.to_json() if as_json else result.format())
    return 0
