"""`decode IMAGES --model M`: inputs, output formats and files, broken images, summary, cold-start imports.

Expected labels come from the numpy reference of tests/test_runtime.py's tiny model, not
from our own prediction code.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from decoder.cli.main import main
from tests.shared_data import DIGITS_LENET, mnist_test_set, require
from tests.test_runtime import TinyModel, write_images, write_tiny_model

REPO = Path(__file__).resolve().parents[1]
JSON_KEYS = ["image", "label", "index", "probability", "top_k"]


@pytest.fixture
def tiny(tmp_path: Path) -> TinyModel:
    return write_tiny_model(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def expected_label(tiny: TinyModel, path: Path) -> str:
    return tiny.labels[int(np.argmax(tiny.reference(path)))]


def class_folders(root: Path, tiny: TinyModel, per_class: int = 6) -> list[tuple[Path, str]]:
    """Images filed under folders named after the labels (round robin), with their folder label."""
    paths = write_images(root / "pool", per_class * len(tiny.labels))
    filed = []
    for index, path in enumerate(paths):
        label = tiny.labels[index % len(tiny.labels)]
        target = root / "set" / label / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
        filed.append((target, label))
    return filed


# --------------------------------------------------------------------------- inputs and formats


def test_folder_is_scanned_recursively_and_json_lines_keep_their_format(
    tmp_path: Path, tiny: TinyModel, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_images(tmp_path / "a", 3) + write_images(tmp_path / "a" / "deeper", 2, seed=9)
    (tmp_path / "a" / "notes.txt").write_text("not an image\n")
    status, out, err = run(capsys, tmp_path / "a", "--model", tiny.path, "--json", "--top-k", "2")
    assert status == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["image"] for r in rows) == sorted(str(p) for p in paths)
    for row in rows:
        assert list(row) == JSON_KEYS
        assert [list(entry) for entry in row["top_k"]] == [["label", "index", "probability"]] * 2
        assert row["label"] == expected_label(tiny, Path(row["image"]))
        assert row["probability"] == row["top_k"][0]["probability"]
    assert "5 of 5 images classified" in err


def test_json_lines_equal_the_prediction_objects_of_the_python_api(
    tmp_path: Path, tiny: TinyModel, capsys: pytest.CaptureFixture[str]
) -> None:
    from decoder import Model

    paths = write_images(tmp_path / "imgs", 40)
    status, out, _ = run(capsys, tmp_path / "imgs", "--model", tiny.path, "--json", "--batch-size", "16")
    assert status == 0
    expected = [json.dumps(p.to_dict()) for p in Model.load(tiny.path).predict(paths)]
    assert out.splitlines() == expected


@settings(max_examples=80, deadline=None)
@given(
    rows=st.integers(1, 6),
    classes=st.integers(1, 7),
    top_k=st.integers(1, 9),
    labelled=st.integers(0, 7),
    data=st.data(),
)
def test_fast_json_formatting_is_character_for_character_json_dumps(
    rows: int, classes: int, top_k: int, labelled: int, data: st.DataObject
) -> None:
    from decoder.cli.predict import json_lines
    from decoder.decoding import decode
    from decoder.runtime import BatchResult

    values = st.one_of(
        st.sampled_from([0.0, 0.5, 1.0, 1e-300, float("nan"), float("inf")]),
        st.floats(0, 1, allow_nan=False),
    )
    probabilities = np.array(
        data.draw(st.lists(st.lists(values, min_size=classes, max_size=classes), min_size=rows, max_size=rows))
    )
    labels = data.draw(st.lists(st.text(max_size=4), min_size=min(labelled, classes), max_size=min(labelled, classes)))
    names = data.draw(st.lists(st.text(max_size=6), min_size=rows, max_size=rows))
    result = BatchResult(names, list(range(rows)), probabilities, [], tuple(labels), top_k)
    fast = json_lines(names, probabilities.tolist(), result.top_indices.tolist(), labels)
    assert fast == [json.dumps(p.to_dict()) for p in decode(probabilities, labels, names, top_k)]


def test_text_output_for_one_image_has_no_summary(
    tmp_path: Path, tiny: TinyModel, capsys: pytest.CaptureFixture[str]
) -> None:
    (path,) = write_images(tmp_path, 1)
    status, out, err = run(capsys, path, "--model", tiny.path)
    assert status == 0 and err == ""
    first, *ranks = out.splitlines()
    label = expected_label(tiny, path)
    assert re.fullmatch(rf"{re.escape(str(path))}: {label} \(\d+\.\d\d%\)", first)
    assert len(ranks) == 3 and ranks[0].split()[:2] == ["1.", label]


def test_glob_patterns_are_expanded(tmp_path: Path, tiny: TinyModel, capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_images(tmp_path / "x", 4)
    status, out, _ = run(capsys, str(tmp_path / "x" / "000[12].png"), "--model", tiny.path, "--json")
    assert status == 0
    assert [json.loads(line)["image"] for line in out.splitlines()] == [str(p) for p in paths[1:3]]
    status, _, err = run(capsys, str(tmp_path / "x" / "*.jpg"), "--model", tiny.path)
    assert status == 2 and "no file matches" in err


def test_digits_list_file_with_class_indices_relative_paths_and_spaces(
    tmp_path: Path, tiny: TinyModel, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = write_images(tmp_path / "data" / "with space", 6)
    truths = [int(np.argmax(tiny.reference(p))) for p in paths]
    truths[0] = (truths[0] + 1) % 3  # one deliberate miss: accuracy 5/6
    lines = [f"with space/{p.name} {t}" for p, t in zip(paths, truths, strict=True)]
    listing = tmp_path / "data" / "val.txt"
    listing.write_text("\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths follow the list file, not the working directory
    output = tmp_path / "out.csv"
    status, out, err = run(capsys, listing, "--model", tiny.path, "--output", output)
    assert status == 0 and out == ""
    assert "accuracy: 83.33% (5 of 6 images with a known class)" in err
    with output.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["image"]).name for r in rows] == [p.name for p in paths]
    assert [int(r["true_index"]) for r in rows] == truths
    assert [r["correct"] for r in rows] == ["0", "1", "1", "1", "1", "1"]
    assert [r["label"] for r in rows] == [expected_label(tiny, p) for p in paths]
    assert set(rows[0]) >= {"label_2", "probability_2", "label_3", "probability_3"}


def test_list_file_with_an_out_of_range_class_is_refused(
    tmp_path: Path, tiny: TinyModel, capsys: pytest.CaptureFixture[str]
) -> None:
    (path,) = write_images(tmp_path, 1)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{path} 7\n")
    status, out, err = run(capsys, listing, "--model", tiny.path)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and "line 1: class index 7 is out of range" in err and "list.txt" in err


def test_jsonl_output_equals_the_json_lines_and_leaves_no_temporary(
    tmp_path: Path, tiny: TinyModel, capsys: pytest.CaptureFixture[str]
) -> None:
    write_images(tmp_path / "imgs", 70)
    _, printed, _ = run(capsys, tmp_path / "imgs", "--model", tiny.path, "--json", "--batch-size", "16")
    output = tmp_path / "out" / "results.jsonl"
    output.parent.mkdir()
    status, out, err = run(capsys, tmp_path / "imgs", "--model", tiny.path, "-o", output, "--batch-size", "16")
    assert status == 0 and out == ""
    assert output.read_text() == printed
    assert os.listdir(output.parent) == ["results.jsonl"]
    assert f"results written to {output}" in err


def test_output_must_be_csv_or_jsonl(tmp_path: Path, tiny: TinyModel, capsys: pytest.CaptureFixture[str]) -> None:
    (path,) = write_images(tmp_path, 1)
    status, _, err = run(capsys, path, "--model", tiny.path, "--output", tmp_path / "r.xlsx")
    assert status == 2 and ".csv or .jsonl" in err
    assert not (tmp_path / "r.xlsx").exists()


# --------------------------------------------------------------------------- broken images


def break_some(paths: list[Path]) -> dict[Path, str]:
    """Damage a few files in different ways; returns each with a word its message must contain."""
    broken = {
        paths[5]: "truncated",
        paths[61]: "not an image",
        paths[130]: "empty",
    }
    paths[5].write_bytes(paths[5].read_bytes()[:50])
    paths[61].write_bytes(b"<html>404 not found</html>")
    paths[130].write_bytes(b"")
    return broken


def test_a_folder_with_broken_images_predicts_the_rest_lists_each_and_exits_2(
    tmp_path: Path, tiny: TinyModel, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_images(tmp_path / "imgs", 300)  # 1% broken
    broken = break_some(paths)
    status, out, err = run(capsys, tmp_path / "imgs", "--model", tiny.path, "--json", "--batch-size", "32")
    assert status == 2
    predicted = [json.loads(line)["image"] for line in out.splitlines()]
    assert predicted == [str(p) for p in paths if p not in broken]
    error_lines = [line for line in err.splitlines() if line.startswith("decode: error:")]
    assert len(error_lines) == 3
    for line, (path, word) in zip(error_lines, broken.items(), strict=True):
        assert str(path) in line and word in line
    assert "297 of 300 images classified" in err and "3 could not be read" in err


def test_strict_stops_at_the_first_broken_image_and_leaves_no_output_file(
    tmp_path: Path, tiny: TinyModel, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_images(tmp_path / "imgs", 300)
    broken = break_some(paths)
    output = tmp_path / "results.csv"
    status, out, err = run(capsys, tmp_path / "imgs", "--model", tiny.path, "--strict", "-o", output)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and str(next(iter(broken))) in err
    assert sorted(os.listdir(tmp_path)) == ["imgs", "tiny.onnx"]  # neither results.csv nor its temporary

    status, out, _ = run(capsys, tmp_path / "imgs", "--model", tiny.path, "--strict", "--json")
    assert status == 2
    assert [json.loads(line)["image"] for line in out.splitlines()] == [str(p) for p in paths[:5]]


# --------------------------------------------------------------------------- summary and confusion


def test_folder_names_give_accuracy_and_the_confusion_matrix(
    tmp_path: Path, tiny: TinyModel, capsys: pytest.CaptureFixture[str]
) -> None:
    filed = class_folders(tmp_path, tiny)
    truth = np.array([tiny.labels.index(label) for _, label in filed])
    predicted = np.array([int(np.argmax(tiny.reference(p))) for p, _ in filed])
    figure = tmp_path / "confusion.png"
    status, _, err = run(capsys, tmp_path / "set", "--model", tiny.path, "--json", "--confusion", figure)
    assert status == 0
    correct = int(np.sum(truth == predicted))
    assert f"accuracy: {100 * correct / len(filed):.2f}% ({correct} of {len(filed)} images" in err
    for index, label in enumerate(tiny.labels):
        mine = truth == index
        hits = int(np.sum(predicted[mine] == index))
        assert re.search(rf"^  {label}\s+\d+\.\d\d%\s+\({hits}/{int(mine.sum())}\)$", err, re.MULTILINE)
    matrix_rows = err.split("columns: predicted class):\n")[1].splitlines()[1:4]
    for index, row in enumerate(matrix_rows):
        counts = [int(n) for n in row.split()[1:]]
        assert counts == [int(np.sum((truth == index) & (predicted == j))) for j in range(3)]
    pytest.importorskip("matplotlib")
    with Image.open(figure) as drawn:
        assert drawn.format == "PNG" and drawn.size[0] > 200
    assert not list(tmp_path.glob(".confusion*"))


def test_confusion_needs_true_classes(tmp_path: Path, tiny: TinyModel, capsys: pytest.CaptureFixture[str]) -> None:
    write_images(tmp_path / "imgs", 3)
    status, out, err = run(capsys, tmp_path / "imgs", "--model", tiny.path, "--confusion", tmp_path / "c.png")
    assert status == 2 and out == "" and "--confusion needs true classes" in err


def test_confusion_without_matplotlib_fails_before_predicting(
    tmp_path: Path, tiny: TinyModel, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a)
    )
    class_folders(tmp_path, tiny, per_class=1)
    status, out, err = run(capsys, tmp_path / "set", "--model", tiny.path, "--confusion", tmp_path / "c.png")
    assert status == 2 and out == ""
    assert "matplotlib" in err and "decoder[viz]" in err and err.count("\n") == 1


def test_progress_bar_only_when_asked_or_on_a_terminal(
    tmp_path: Path, tiny: TinyModel, capsys: pytest.CaptureFixture[str]
) -> None:
    write_images(tmp_path / "imgs", 40)
    _, _, quiet = run(capsys, tmp_path / "imgs", "--model", tiny.path, "--json")
    assert "\r" not in quiet and "ETA" not in quiet  # stderr is not a terminal here
    _, _, shown = run(capsys, tmp_path / "imgs", "--model", tiny.path, "--json", "--progress")
    assert re.search(r"\r\[#+\] 40/40 100%\s+[\d,]+ img/s\s+ETA 00:00", shown)
    _, _, silent = run(capsys, tmp_path / "imgs", "--model", tiny.path, "--json", "--quiet")
    assert silent == ""


# --------------------------------------------------------------------------- cold start


def test_prediction_imports_neither_onnx_nor_matplotlib_nor_the_converter(tmp_path: Path, tiny: TinyModel) -> None:
    (path,) = write_images(tmp_path, 1)
    probe = (
        "import sys\n"
        "from decoder.cli.main import main\n"
        f"status = main([{str(path)!r}, '--model', {str(tiny.path)!r}])\n"
        "heavy = ('onnx', 'matplotlib', 'cv2', 'decoder.converter', 'decoder.conversion', 'decoder.caffe_io')\n"
        "print(status, sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120, check=False
    )
    assert result.stdout.splitlines()[-1] == "0 []", result.stderr


# --------------------------------------------------------------------------- the real DIGITS LeNet


def test_digits_lenet_accuracy_in_the_summary_matches_the_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = require(DIGITS_LENET / "digits_model.tar.gz")
    images, labels = mnist_test_set()
    model = tmp_path / "lenet.onnx"
    assert main(["convert", str(archive), "-o", str(model)]) == 0
    lines = []
    for index in range(600):
        path = tmp_path / "digits" / f"{index:04d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(255 - images[index]).save(path, compress_level=1)  # DIGITS polarity
        lines.append(f"digits/{path.name} {labels[index]}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    status, out, err = run(capsys, tmp_path / "list.txt", "--model", model, "--json", "--batch-size", "100")
    assert status == 0
    predicted = np.array([json.loads(line)["index"] for line in out.splitlines()])
    correct = int(np.sum(predicted == labels[:600]))
    assert correct >= 0.98 * 600
    assert f"accuracy: {100 * correct / 600:.2f}% ({correct} of 600 images with a known class)" in err


def test_a_reader_that_leaves_early_is_not_an_error(tmp_path: Path) -> None:
    """`decode ... | head -1`: the closed pipe ends the run quietly with status 0."""
    repo = Path(__file__).resolve().parents[1]
    sample = repo / "converted_models" / "samples" / "digit_3.png"
    listing = tmp_path / "many.txt"
    listing.write_text(f"{sample}\n" * 3000)  # ~1 MB of JSON: more than a pipe buffer
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "decoder.cli.main",
            str(listing),
            "-m",
            str(repo / "converted_models" / "lenet.onnx"),
            "--json",
            "-q",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()
    status = process.wait(timeout=60)
    assert first.startswith(b'{"image": ')
    assert status == 0
    assert process.stderr.read() == b""


def test_a_real_process_ends_with_all_its_output_written(tmp_path: Path) -> None:
    """The console script leaves by os._exit (no interpreter teardown): nothing may be lost by it."""
    repo = Path(__file__).resolve().parents[1]
    samples = sorted((repo / "converted_models" / "samples").glob("digit_*.png"))
    listing = tmp_path / "many.txt"
    listing.write_text("".join(f"{p}\n" for p in samples) * 500)
    model = repo / "converted_models" / "lenet.onnx"
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with (tmp_path / "stdout.jsonl").open("w") as stdout:  # a file: block-buffered, unlike a terminal
        done = subprocess.run(
            [sys.executable, "-m", "decoder.cli.main", str(listing), "-m", str(model), "--json"],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            env=buffered,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0
    rows = [json.loads(line) for line in (tmp_path / "stdout.jsonl").read_text().splitlines()]
    assert [r["image"] for r in rows] == [str(p) for p in samples] * 500
    assert f"{len(rows):,} of {len(rows):,} images classified" in done.stderr  # the summary, after the rows
    csv_run = subprocess.run(
        [sys.executable, "-m", "decoder.cli.main", str(listing), "-m", str(model), "-o", str(tmp_path / "r.csv")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert csv_run.returncode == 0 and len((tmp_path / "r.csv").read_text().splitlines()) == 1 + len(rows)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
