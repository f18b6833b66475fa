"""Options shared by several commands, defined once."""

from __future__ import annotations

import click

#: The converted model every prediction-side command runs.
model_option = click.option(
    "--model",
    "-m",
    "model_path",
    required=True,
    envvar="DECODER_MODEL",
    type=click.Path(dir_okay=False),
    help="A .onnx written by `decode convert` (env DECODER_MODEL).",
)
