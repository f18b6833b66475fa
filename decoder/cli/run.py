"""`decode run IMAGES --model M -o outputs.npz`: every output blob of any model, per image.

For the models `decode IMAGE` refuses to label (detectors, MTCNN's probability maps,
regression heads) and for anyone who wants the raw arrays: the images get the model's own
preprocessing, and every output blob is stacked over the images as an (N, ...) array in
an .npz, beside ``images`` (the N paths, in row order). Inputs are named as for predict
(files, folders, globs, list files). A broken image never stops the run: it is listed on
stderr, left out of the arrays, and the exit status is 2 with a count. The .npz is
assembled under a temporary name and renamed at the end (never half-written).
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from decoder.cli.options import batch_size_option, image_folder_option, model_option, strict_option
from decoder.errors import DecoderError

#: The key of the image paths in the .npz (an output blob may not take it).
IMAGES_KEY = "images"


@click.command()
@click.argument("images", nargs=-1, required=True)
@model_option
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The .npz to write: one (N, ...) array per output blob, plus `images` (the N paths).",
)
@batch_size_option
@click.option("--workers", default=None, type=click.IntRange(0), help="Threads decoding and running batches [2].")
@strict_option
@image_folder_option
@click.option("--quiet", "-q", is_flag=True, help="No summary (errors are still reported).")
def run(
    images: tuple[str, ...],
    model_path: str,
    output: Path,
    batch_size: int | None,
    workers: int | None,
    strict: bool,
    image_folder: str | None,
    quiet: bool,
) -> int:
    """Run IMAGES through any model (detectors too) and save every output blob per image to an .npz.

    \b
      decode run photos/ --model detector.onnx -o outputs.npz
      then in Python: data = numpy.load("outputs.npz")
      data["images"][i] is image i's path, data[BLOB][i] its output BLOB
    """
    from decoder.cli.inputs import expand_inputs
    from decoder.npz_output import StackedNpzWriter
    from decoder.runtime import Model

    if output.suffix.lower() != ".npz":
        raise click.BadParameter("the file must end in .npz", param_hint="--output")
    model = Model.load(model_path, pipeline=workers != 0)  # threads chosen for the model (decoder.execution)
    names = [o.name for o in model.session.get_outputs()]
    if IMAGES_KEY in names:
        raise DecoderError(f"an output blob is named {IMAGES_KEY!r}, the .npz key of the image paths", model_path)
    inputs = [item.path for item in expand_inputs(images, image_folder=image_folder)]
    started = time.perf_counter()
    done: list[str] = []
    failures = 0
    with StackedNpzWriter(output) as writer:
        for batch in model.run_images(inputs, batch_size, workers):
            if batch.failures and strict:
                raise batch.failures[0].error
            for failure in batch.failures:
                click.echo(f"decode: error: {failure.error}", err=True)
            failures += len(batch.failures)
            if batch.names:
                writer.append(batch.outputs)
                done.extend(batch.names)
        if not done:
            raise DecoderError(f"none of the {len(inputs)} image(s) could be read; nothing written", output)
        import numpy as np

        writer.commit({IMAGES_KEY: np.array(done, dtype=str)})
    if not quiet:
        elapsed = time.perf_counter() - started
        line = f"decode: {len(done):,} of {len(inputs):,} images run in {elapsed:.2f} s"
        if failures:
            line += f"; {failures:,} could not be read (listed above)"
        click.echo(line, err=True)
        shapes = ", ".join(f"{name} {tuple([len(done), *writer.row_shape(name)])}" for name in names)
        click.echo(f"decode: wrote {output}: {IMAGES_KEY} ({len(done)},), {shapes}", err=True)
    return 2 if failures else 0
