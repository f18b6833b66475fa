"""The README stays true: its commands are the ones CI runs; docs/layers.md's table is the registry's."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from decoder.cli.main import main
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


def _quick_start_commands() -> list[str]:
    """The one-line ``pip install ... && decode ...`` commands of the README's Quick start, in order."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Quick start") :]
    section = section[: section.index("\n## ", 1)]
    return [c for c in re.findall(r"```sh\n(pip install [^\n]+)\n```", section) if "&& decode " in c]


def test_quick_start_installs_this_distribution_from_the_registry() -> None:
    pyproject = (README.parent / "pyproject.toml").read_text(encoding="utf-8")
    name = re.search(r'^name = "([^"]+)"$', pyproject, flags=re.MULTILINE).group(1)  # tomllib needs 3.11
    first = _quick_start_commands()[0]
    assert first.startswith(f"pip install {name} && "), first


def test_ci_runs_the_quick_start_from_the_installed_wheel() -> None:
    """.ci/run runs the first command's `decode` part in a venv holding only the built wheel."""
    decode_part = _quick_start_commands()[0].split(" && ", 1)[1]
    ci_script = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert decode_part in [line.strip() for line in ci_script.splitlines()]


@pytest.mark.parametrize("command", _quick_start_commands())
def test_quick_start_classifies_the_shipped_digits(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each Quick start `decode` command runs from the checkout and labels every sample as its file name says."""
    monkeypatch.chdir(README.parent)
    argv = shlex.split(command.split(" && ", 1)[1])
    assert argv[0] == "decode"
    assert main(argv[1:]) == 0
    answers = re.findall(r"^(\S*digit_(\d)\.png): (\S+) \(", capsys.readouterr().out, flags=re.MULTILINE)
    assert answers, command
    for path, digit, label in answers:
        assert Path(path).is_file() and label == digit, (path, label)
