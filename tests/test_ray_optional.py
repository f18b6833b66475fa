"""The ray extra stays optional: nothing of Ray is imported without --ray, and --ray fails early and clearly.

These tests start no Ray (tests/test_ray.py does).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from decoder.cli.main import main

REPO = Path(__file__).resolve().parents[1]
LENET = REPO / "converted_models" / "lenet.onnx"
SAMPLES = REPO / "converted_models" / "samples"


def test_import_and_a_local_run_load_nothing_of_ray(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "import decoder, decoder.ray\n"  # the subpackage itself imports Ray only when used
        "from decoder.cli.main import main\n"
        f"status = main([{str(SAMPLES)!r}, '--model', {str(LENET)!r}, '-o', {str(tmp_path / 'r.csv')!r}, '-q'])\n"
        "print(status, sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'pyarrow', 'pandas')))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.stdout.splitlines()[-1] == "0 []", result.stderr


@pytest.mark.parametrize("address", ["images/", "digit.png", "not an address"])
def test_an_argument_taken_for_the_address_is_refused_before_any_work(
    address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`decode --ray images/ -m M`: click gives `images/` to --ray; say so instead of guessing."""
    status = main(["--debug", str(SAMPLES), "--model", str(LENET), "--ray", address])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and f"not {address!r}" in err and "--ray=local" in err


def test_without_ray_installed_the_message_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec

    def without_ray(name: str, *args: object) -> object:
        return None if name.startswith("ray") else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_ray)
    status = main([str(SAMPLES), "--model", str(LENET), "--ray"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert "pip install 'caffe-decoder[ray]'" in err


def test_help_documents_the_optional_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--ray [ADDRESS]" in text and "ray://HOST:PORT" in text and "RAY_ADDRESS" in text
