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

#: Where ONNX Runtime runs the model: a --device name or an execution provider's name.
device_option = click.option(
    "--device",
    default="cpu",
    show_default=True,
    envvar="DECODER_DEVICE",
    help="Where to run: cpu, cuda, tensorrt, ... or an ONNX Runtime provider name; only what the "
    "installed onnxruntime offers (onnxruntime-gpu for cuda) (env DECODER_DEVICE).",
)
