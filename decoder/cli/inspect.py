"""`decode inspect MODEL`: per-layer type, output shape, parameters and multiply-adds."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("model")
@click.option("--weights", type=click.Path(dir_okay=False), help="caffemodel for a bare deploy prototxt (optional).")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def inspect(model: str, weights: str | None, as_json: bool) -> int:
    """Show each layer of MODEL (.onnx, deploy.prototxt, DIGITS archive or folder)."""
    from decoder.inspection import format_table, inspect_path

    result = inspect_path(model, weights)
    click.echo(json.dumps(result.to_dict()) if as_json else format_table(result))
    return 0
