"""Options shared by several commands, defined once.

``decode convert`` and ``decode attach`` speak the same preprocessing vocabulary, so a
user who learnt one knows the other and both produce the same numbers: the options are
declared here once (:func:`preprocessing_options`) and parsed by the same functions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import click

from decoder.errors import DecoderError
from decoder.spec import CHANNEL_ORDERS, MEAN_KINDS, RESIZE_MODES

_Command = TypeVar("_Command", bound=Callable[..., Any])

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


class _Number(click.ParamType):
    """A float, also written as a fraction: ``--scale 1/255`` is what people read in training scripts."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        try:
            if "/" in text:
                numerator, denominator = text.split("/", 1)
                return float(numerator) / float(denominator)
            return float(text)
        except (ValueError, ZeroDivisionError):
            self.fail(f"{value!r} is not a number or a fraction such as 1/255", param, ctx)


#: Images per ONNX Runtime call, for the commands that run image batches (predict, run).
batch_size_option = click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(1),
    help="Images per ONNX Runtime call [default: up to 256, fewer for nets with large activations].",
)

#: The broken-image policy of the batch commands: list and skip, or stop.
strict_option = click.option(
    "--strict", is_flag=True, help="Stop at the first unreadable image instead of listing and skipping it."
)

#: Where a list file's relative paths are read from.
image_folder_option = click.option(
    "--image-folder",
    type=click.Path(file_okay=False),
    help="Prefix for relative paths in list files (default: the list file's folder).",
)


#: For Caffe files whose prototxt declares no input size.
input_shape_option = click.option(
    "--input-shape",
    help="C,H,W of the input, for nets whose prototxt declares none (train/test or V1 data-layer nets).",
)


@dataclass(frozen=True)
class Preprocessing:
    """What the user stated with :func:`preprocessing_options`, as typed (None: not given)."""

    labels: str | None = None
    mean: str | None = None
    mean_values: str | None = None
    mean_kind: str | None = None
    scale: float | None = None
    channel_order: str | None = None
    resize_mode: str | None = None
    score_output: str | None = None
    input_shape: str | None = None

    def overrides(self) -> dict[str, object]:
        """The settings as `decoder.conversion.convert` takes them (``--labels`` and ``--mean``
        are files, which go to ``open_sources`` instead)."""
        return {
            "mean_kind": self.mean_kind,
            "mean_values": parse_mean_values(self.mean_values),
            "resize_mode": self.resize_mode,
            "scale": self.scale,
            "channel_order": self.channel_order,
            "input_shape": parse_input_shape(self.input_shape),
            "score_output": self.score_output,
        }


def preprocessing_options(*, input_shape: bool) -> Callable[[_Command], _Command]:
    """The options that state how the model was trained; none has a default, so "not given" is visible.

    The command receives them as one ``preprocessing`` argument (:class:`Preprocessing`).
    ``input_shape`` adds ``--input-shape``, for the commands that convert Caffe files (convert,
    and diagnose, compare and inspect, which convert on the fly); attach edits a .onnx.
    """
    options = [
        click.option("--labels", type=click.Path(), help="Labels file, one per line (labels.txt, synset_words.txt)."),
        click.option("--mean", type=click.Path(), help="Mean image/pixel: .binaryproto, or .npy (C,H,W) / (C,)."),
        click.option("--mean-values", help="Mean pixel in the net's channel order, e.g. 104,117,123 (grey: one)."),
        click.option(
            "--mean-kind",
            type=click.Choice(MEAN_KINDS),
            help="Subtract the mean image, its per-channel average (pixel), or none.",
        ),
        click.option("--scale", type=_Number(), help="Multiply the de-meaned pixels by this (e.g. 0.017, 1/255)."),
        click.option(
            "--channel-order",
            type=click.Choice(CHANNEL_ORDERS, case_sensitive=False),
            metavar=f"[{'|'.join(CHANNEL_ORDERS)}]",  # click would show them lower-cased; every message says RGB
            help="Channel order the net was trained on (Caffe tools: BGR; PIL/skimage/PyTorch data: RGB).",
        ),
        click.option("--resize-mode", type=click.Choice(RESIZE_MODES), help="How images reach the input size."),
        click.option("--score-output", help="Output blob holding the class scores [default: last in sorted order]."),
    ]
    if input_shape:
        options.insert(0, input_shape_option)
    names = [f.name for f in fields(Preprocessing)]

    def decorate(command: _Command) -> _Command:
        @functools.wraps(command)
        def gathered(*args: Any, **kwargs: Any) -> Any:
            stated = {name: kwargs.pop(name) for name in names if name in kwargs}
            return command(*args, preprocessing=Preprocessing(**stated), **kwargs)

        wrapped: Any = gathered
        for option in reversed(options):
            wrapped = option(wrapped)
        return wrapped  # type: ignore[no-any-return]

    return decorate


def parse_mean_values(text: str | None) -> tuple[float, ...]:
    """``--mean-values 104,117,123`` as floats; () when not given."""
    if not text:
        return ()
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise DecoderError(f"--mean-values {text!r} is not a comma-separated list of numbers") from None
    if not all(abs(v) < float("inf") for v in values):
        raise DecoderError(f"--mean-values {text!r} must be finite numbers")
    return values


def parse_input_shape(text: str | None) -> tuple[int, int, int] | None:
    """``--input-shape 3,224,224`` as (C, H, W); None when not given."""
    if not text:
        return None
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0:
        raise DecoderError(f"--input-shape {text!r} is not C,H,W (three positive integers, e.g. 3,224,224)")
    return values[0], values[1], values[2]
