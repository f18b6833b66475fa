"""`decode`: the entry point, its subcommand table and its error policy.

`decode IMAGE... --model M` predicts (the default command); `decode convert ...`,
`decode diagnose ...` and the rest are subcommands, each in its own module and imported
only when invoked, so a plain prediction does not pay for the converter's imports.

Errors: a :class:`~decoder.errors.DecoderError` (bad input) prints one line on stderr and
exits 2; a usage error exits 2 with click's message; anything else is a bug: one line
and exit 1, with the traceback only under ``--debug``. Python warnings from the libraries
are silenced unless ``--debug``, so they cannot bury those lines.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
import warnings

import click

from decoder import __version__
from decoder.errors import DecoderError

#: subcommand -> (module, function); `predict` is what runs when no subcommand is named.
COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("decoder.cli.predict", "predict"),
    "run": ("decoder.cli.run", "run"),
    "convert": ("decoder.cli.convert", "convert"),
    "demo": ("decoder.cli.demo", "demo"),
    "attach": ("decoder.cli.attach", "attach"),
    "inspect": ("decoder.cli.inspect", "inspect"),
    "diagnose": ("decoder.cli.diagnose", "diagnose"),
    "compare": ("decoder.cli.compare", "compare"),
    "visualize": ("decoder.cli.visualize", "visualize"),
    "serve": ("decoder.cli.serve", "serve"),
}
DEFAULT_COMMAND = "predict"


class DecodeGroup(click.Group):
    """A group whose subcommands load lazily and whose default command is `predict`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attribute = COMMANDS[cmd_name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            return None  # listed but not built yet
        return getattr(module, attribute)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # `decode ... | head`: the reader left, nothing failed. Point stdout at /dev/null
            # so the interpreter's last flush stays quiet (the Python docs' SIGPIPE recipe).
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # `decode img.png --model m.onnx` means `decode predict img.png --model m.onnx`.
        first = next((a for a in args if a not in ("--debug",)), None)
        if first is not None and first not in COMMANDS and first not in ("--help", "-h", "--version"):
            position = args.index(first)
            args = [*args[:position], DEFAULT_COMMAND, *args[position:]]
        return super().parse_args(ctx, args)


@click.group(cls=DecodeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the full traceback of internal errors.")
# From decoder itself, not the installed distribution's metadata: a checkout runs without install.
@click.version_option(version=__version__, message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Convert Caffe / NVIDIA DIGITS classifiers to ONNX and predict exactly like DIGITS.

    \b
      decode IMAGE... --model lenet.onnx          label, probability, top-k
      decode run IMAGE... -m M -o out.npz         every output blob per image (detectors too)
      decode convert MODEL -o lenet.onnx          DIGITS archive, job folder, or prototxt + caffemodel
      decode demo                                 the shipped demo model on the shipped sample digits
    """
    ctx.obj = {"debug": debug}


def main(argv: list[str] | None = None) -> int:
    """Run `decode`; returns the exit status (0 ok, 1 internal error, 2 bad input or usage)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args[: args.index("--")] if "--" in args else "--debug" in args
    if debug:  # accepted anywhere on the line, as users append it when something fails
        args.remove("--debug")
        args.insert(0, "--debug")
    try:
        with warnings.catch_warnings():
            if not debug:
                # Library warnings (Pillow on odd TIFF tags or big images, protobuf, onnx) would
                # put multi-line noise around our one-line messages; --debug shows them.
                warnings.simplefilter("ignore")
            status = cli.main(args=args, prog_name="decode", standalone_mode=False)
    except DecoderError as exc:
        click.echo(f"decode: error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        # One line, like every other input error (click's own format spreads it over three).
        command = exc.ctx.command_path if exc.ctx is not None else "decode"
        click.echo(f"decode: error: {exc.format_message()} (see `{command} --help`)", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"decode: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            click.echo("decode: interrupted", err=True)
            return 130
        click.echo("decode: aborted", err=True)
        return 1
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        click.echo("decode: interrupted", err=True)
        return 130
    except Exception as exc:  # a bug of ours: say so in one line
        if debug:
            traceback.print_exc()
        click.echo(f"decode: internal error: {type(exc).__name__}: {exc} (run with --debug for details)", err=True)
        return 1
    return status if isinstance(status, int) else 0


def entry() -> None:
    """The `decode` console script: :func:`main`, then an exit that skips the interpreter's teardown.

    Why: finalizing the interpreter (ONNX Runtime's sessions and thread pools, numpy's
    modules) took ~60 ms of a 0.34 s one-image prediction, for nothing: every file this
    tool writes is complete and renamed into place before :func:`main` returns, and every
    temporary folder is removed in a ``finally``. Once stdout and stderr are flushed, the
    process ends with :func:`os._exit`. A run that started Ray exits normally, so that
    Ray's own exit hook stops the processes it started.
    """
    status = main()
    if "ray" in sys.modules:
        sys.exit(status)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # `decode ... | head`: the reader left, nothing failed
        pass
    except OSError:  # e.g. a full disk: the normal exit reports it, with its exit status
        sys.exit(status)
    os._exit(status)


if __name__ == "__main__":
    entry()
