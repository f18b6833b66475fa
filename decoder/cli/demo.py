"""`decode demo`: the shipped demo model on the shipped sample digits, with the paths of both.

A fresh install has no model and no images yet; this gives it one working run and shows
the ordinary command it stands for, so the next step is that command on your own files.
"""

from __future__ import annotations

import shlex

import click


@click.command()
@click.pass_context
def demo(ctx: click.Context) -> int:
    """Classify the sample digits shipped with decoder using its demo LeNet, and show where both are."""
    from decoder.cli.predict import predict
    from decoder.demo import MODEL, SAMPLES

    click.echo(f"decode: running: decode {shlex.quote(str(SAMPLES))} --model {shlex.quote(str(MODEL))}", err=True)
    return ctx.invoke(predict, images=(str(SAMPLES),), model_path=str(MODEL))
