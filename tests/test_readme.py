"""The README stays true: its commands are the ones CI runs; docs/layers.md's table is the registry's."""

from __future__ import annotations

import re

from scripts.layer_table import BEGIN, END, LAYERS_DOC, render

README = LAYERS_DOC.parent.parent / "README.md"


def test_layer_table_in_docs_is_generated_from_the_registry() -> None:
    text = LAYERS_DOC.read_text(encoding="utf-8")
    table = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert table == render(), "run: python scripts/layer_table.py --write"


def test_ci_runs_the_readme_test_command() -> None:
    text = README.read_text(encoding="utf-8")
    commands = re.findall(r"```sh\n(pip install [^\n]+)\n```", text)
    test_command = next(c for c in commands if "pytest" in c)
    ci_script = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert test_command in ci_script.splitlines()


def test_quick_start_uses_shipped_files() -> None:
    text = README.read_text(encoding="utf-8")
    run_command = next(c for c in re.findall(r"```sh\n(pip install [^\n]+)\n```", text) if "decode " in c)
    for path in re.findall(r"converted_models/\S+", run_command):
        assert (README.parent / path).is_file(), path
