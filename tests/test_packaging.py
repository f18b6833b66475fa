"""The distribution: the sdist and wheel hold the package and its demo files only, and the wheel runs installed.

One build per session (about 10 s): ``python -m build`` makes the sdist, then the wheel from
the unpacked sdist, as CI does. It builds a copy of the checkout so setuptools' ``build/``
and ``*.egg-info`` never land in the working tree. The wheel is then installed by pip into
a folder of its own and run from a temporary directory, so ``decoder`` comes from the
install and not from the checkout (its dependencies come from the running environment; CI
installs the wheel with its dependencies into a fresh venv).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from decoder import __version__
from decoder.cli.main import main

pytest.importorskip("build", reason="the test extra's `build` makes the sdist and wheel")

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "decoder" / "demo" / "files"
DISTRIBUTION = "caffe-decoder"
RUNTIME_DEPENDENCIES = {"numpy", "onnx", "onnxruntime", "opencv-python-headless", "pillow", "click", "protobuf"}
NOT_SOURCES = shutil.ignore_patterns(".git", "__pycache__", "build", "dist", "*.egg-info", ".*_cache", ".hypothesis")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel built from it, by ``python -m build`` on a copy of the checkout."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=NOT_SOURCES)
    out = work / "dist"
    command = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel, "work": work}


def _wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_artifact_names_carry_the_distribution_and_version(artifacts: dict[str, Path]) -> None:
    stem = f"{DISTRIBUTION.replace('-', '_')}-{__version__}"
    assert artifacts["sdist"].name == f"{stem}.tar.gz"
    assert artifacts["wheel"].name == f"{stem}-py3-none-any.whl"


def test_wheel_holds_every_module_the_demo_and_no_other_data(artifacts: dict[str, Path]) -> None:
    names = _wheel_names(artifacts["wheel"])
    dist_info = f"{DISTRIBUTION.replace('-', '_')}-{__version__}.dist-info/"
    assert [n for n in names if not n.startswith(("decoder/", dist_info))] == []

    # Every module of the checkout (a subpackage without __init__.py would be left out silently).
    checkout_modules = {p.relative_to(REPO).as_posix() for p in (REPO / "decoder").rglob("*.py")}
    assert {n for n in names if n.endswith(".py")} == checkout_modules

    samples = sorted(p.name for p in (DEMO / "samples").glob("digit_*.png"))
    assert len(samples) == 6
    expected_data = {
        "decoder/py.typed",
        "decoder/caffe_proto/caffe.proto",
        "decoder/demo/files/lenet.onnx",
        *(f"decoder/demo/files/samples/{name}" for name in samples),
        *(f"decoder/serve/static/{p.name}" for p in (REPO / "decoder" / "serve" / "static").iterdir()),  # the page
    }
    assert {n for n in names if n.startswith("decoder/") and not n.endswith(".py")} == expected_data
    with zipfile.ZipFile(artifacts["wheel"]) as archive:
        for name in expected_data - {"decoder/py.typed"}:
            assert archive.read(name) == (REPO / name).read_bytes(), name
    assert f"{dist_info}licenses/LICENSE" in names


def test_wheel_metadata_names_the_distribution_its_dependencies_and_command(artifacts: dict[str, Path]) -> None:
    dist_info = f"{DISTRIBUTION.replace('-', '_')}-{__version__}.dist-info"
    with zipfile.ZipFile(artifacts["wheel"]) as archive:
        metadata = Parser().parsestr(archive.read(f"{dist_info}/METADATA").decode("utf-8"))
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode("utf-8")
    assert metadata["Name"] == DISTRIBUTION
    assert metadata["Version"] == __version__
    assert metadata["License-Expression"] == "BSD-2-Clause"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload().startswith("# decoder")  # the README is the PyPI page
    requirements = metadata.get_all("Requires-Dist")
    unconditional = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requirements if "extra ==" not in r}
    assert unconditional == RUNTIME_DEPENDENCIES
    assert {"test", "viz", "dev"} <= set(metadata.get_all("Provides-Extra"))
    assert "decode = decoder.cli.main:entry" in entry_points


def test_sdist_holds_the_sources_without_tests(artifacts: dict[str, Path]) -> None:
    with tarfile.open(artifacts["sdist"]) as archive:
        members = {m.name.split("/", 1)[1] for m in archive.getmembers() if "/" in m.name}
    for required in ("pyproject.toml", "README.md", "CHANGELOG.md", "LICENSE", "decoder/demo/files/lenet.onnx"):
        assert required in members, required
    assert not any(m.startswith(("tests/", "scripts/", "converted_models", ".ci/")) for m in members)


def test_version_is_the_one_the_checkout_reports(capsys: pytest.CaptureFixture[str]) -> None:
    """`decode --version` works without an install (no distribution metadata to read)."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"decode {__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_installed_wheel_runs_the_demo_away_from_the_checkout(artifacts: dict[str, Path]) -> None:
    site = artifacts["work"] / "site"
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(site)]
    done = subprocess.run([*install, str(artifacts["wheel"])], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    elsewhere = artifacts["work"] / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    decode = site / "bin" / "decode"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120, check=False)

    imported = run(sys.executable, "-c", "import decoder; print(decoder.__file__)")
    assert Path(imported.stdout.strip()).is_relative_to(site), imported.stdout + imported.stderr

    version = run(str(decode), "--version")
    assert (version.returncode, version.stdout) == (0, f"decode {__version__}\n"), version.stderr

    demo = run(str(decode), "demo")
    assert demo.returncode == 0, demo.stderr
    installed = site / "decoder" / "demo" / "files"
    assert f"decode {installed / 'samples'} --model {installed / 'lenet.onnx'}" in demo.stderr
    answers = re.findall(r"^(\S+digit_(\d)\.png): (\S+) \(", demo.stdout, flags=re.MULTILINE)
    assert len(answers) == 6, demo.stdout
    for path, digit, label in answers:
        assert Path(path).parent == installed / "samples" and label == digit, (path, label)
