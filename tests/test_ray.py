"""decoder.ray and `decode --ray` on a local Ray (2 CPUs): the local run's rows, exactly, from a cluster.

One Ray is started for the module (starting one costs seconds); every test compares what
came back from the actors with what the local pipeline gives for the same files, float
for float, so the Ray path cannot drift from the preprocessing it distributes. The images:
MNIST test digits (in DIGITS's polarity) when ../shared holds them, else seeded random
digits, plus colour JPEGs of other sizes and a palette PNG (the Pillow path), and broken files.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decoder import Model
from decoder.cli.main import main
from tests.shared_data import MNIST

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'caffe-decoder[ray]'")
pytest.importorskip("ray.data", reason="needs Ray Data: pip install 'caffe-decoder[ray]'")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray's own, about its internals

REPO = Path(__file__).resolve().parents[1]
LENET = REPO / "converted_models" / "lenet.onnx"
DIGITS = 1_100
BROKEN = {"3/broken.png": b"not a png at all", "7/empty.png": b"", "5/cut.jpg": None}  # None: a truncated JPEG


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    from decoder.ray import runtime_env

    if ray.is_initialized():
        ray.shutdown()
    # log_to_driver=False, as `decode --ray` does: a Ray worker's own crash report (Ray restarts
    # it) must not land among decode's stderr lines, which the CLI test compares with the local run's.
    quiet = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
    ray.init(address="local", num_cpus=2, runtime_env=runtime_env(), **quiet)  # never a running cluster
    yield
    ray.shutdown()


def _digits(count: int) -> tuple[np.ndarray, np.ndarray]:
    if (MNIST / "t10k-images-idx3-ubyte.gz").exists():
        from tests.shared_data import mnist_test_set

        images, labels = mnist_test_set()
        return 255 - images[:count], labels[:count]  # DIGITS's MNIST: dark digits on white
    rng = np.random.default_rng(14)
    return rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), rng.integers(0, 10, count)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folders named after LeNet's labels (so the summary has accuracy), >= 1,000 images, three broken."""
    root = tmp_path_factory.mktemp("ray") / "images"
    pixels, labels = _digits(DIGITS)
    for index, (image, label) in enumerate(zip(pixels, labels, strict=True)):
        path = root / str(label) / f"{index:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path, compress_level=1)
    rng = np.random.default_rng(1)
    for index, size in enumerate([(40, 31), (64, 64), (17, 90), (300, 200)]):
        colour = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        colour.save(root / str(index) / f"colour{index}.jpg", quality=90)
    palette = Image.fromarray(rng.integers(0, 256, (30, 30), dtype=np.uint8)).convert("P")
    palette.info["transparency"] = 0
    palette.save(root / "8" / "palette.png")
    for name, data in BROKEN.items():
        if data is None:
            data = (root / "0" / "colour0.jpg").read_bytes()[:300]
        (root / name).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def local(images: Path) -> dict[str, tuple[np.ndarray | None, str]]:
    """The local pipeline's result per path: (probabilities, "") or (None, error message)."""
    model = Model.load(LENET)
    paths = sorted(str(p) for p in images.rglob("*") if p.is_file())
    results: dict[str, tuple[np.ndarray | None, str]] = {}
    for batch in model.predict_batches(paths, batch_size=100):
        for name, row in zip(batch.names, batch.probabilities, strict=True):
            results[name] = (row, "")
        for failure in batch.failures:
            results[failure.name] = (None, str(failure.error))
    assert len(results) == len(paths) >= 1_000 + len(BROKEN)
    return results


def _summary_lines(err: str) -> list[str]:
    """stderr without the timing, which differs between runs."""
    return [re.sub(r" in [\d.]+ s \([\d,]+ images/s\)", "", line) for line in err.splitlines()]


def test_decode_ray_writes_the_local_rows_and_summary(
    local_ray: None,
    images: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`decode IMAGES -m M --ray -o x.csv`: the same file, byte for byte, and the same stderr but the timing.

    The images are named relative to the driver's working directory, which the actors do not share.
    """
    monkeypatch.chdir(images.parent)
    assert main(["images", "--model", str(LENET), "-o", str(tmp_path / "local.csv")]) == 2
    local_err = capsys.readouterr().err
    # --workers 2: the actors; --batch-size 64: 18 blocks, so both actors work and order must be restored
    argv = ["images", "--model", str(LENET), "--ray", "--workers", "2", "--batch-size", "64"]
    assert main([*argv, "-o", str(tmp_path / "ray.csv")]) == 2
    ray_err = capsys.readouterr().err
    assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    assert _summary_lines(ray_err.replace("ray.csv", "local.csv")) == _summary_lines(local_err)
    assert "accuracy:" in ray_err and "confusion matrix" in ray_err
    for name in BROKEN:
        assert f"decode: error: {Path('images') / name}: " in ray_err  # listed, not fatal
    with open(tmp_path / "ray.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == DIGITS + 5 and not any(r["image"].endswith(tuple(BROKEN)) for r in rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local.csv", "ray.csv"]  # no temporary file left


def test_a_dataset_of_image_bytes_gives_the_local_probabilities(
    local_ray: None, images: Path, local: dict[str, tuple[np.ndarray | None, str]]
) -> None:
    """``read_binary_files(include_paths=True)`` -> predict_dataset: one row per file, keyed by path.

    Two class folders (the 1,000-image comparison is the CLI test's), the Pillow-path images
    and the broken files: bytes decoding must give the file's pixels and the file's message.
    """
    from decoder.ray import RESULT_COLUMNS, predict_dataset

    chosen = sorted(
        {p for p in local if Path(p).parent.name in ("0", "1") or not p.endswith(".png")}
        | {str(images / name) for name in BROKEN}
        | {str(images / "8" / "palette.png")}
    )
    dataset = ray.data.read_binary_files(chosen, include_paths=True)
    results = predict_dataset(dataset, LENET, batch_size=128)  # default pool: leaves a CPU to the reads
    rows = results.take_all()
    names = [os.path.abspath(str(row["path"])) for row in rows]
    assert sorted(names) == chosen and len(set(names)) == len(names)  # nothing lost, nothing twice
    assert set(RESULT_COLUMNS) <= set(rows[0])
    labels = Model.load(LENET).labels
    for name, row in zip(names, rows, strict=True):
        expected, error = local[name]
        if expected is None:
            assert row["error"] == error and row["index"] == -1 and np.isnan(row["probability"])
            continue
        assert row["error"] == ""
        np.testing.assert_array_equal(row["probabilities"], expected)  # exactly, not approximately
        best = int(np.argmax(expected))
        assert (row["index"], row["label"], row["probability"]) == (best, labels[best], expected[best])


def _actor_processes() -> dict[int, str]:
    """pid -> title of this test process's Ray actors running ImagePredictor (Linux /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if title.startswith("ray::") and "ImagePredictor" in title:
                found[int(entry.name)] = title
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the actor processes through /proc")
def test_a_killed_actor_is_restarted_and_no_row_is_lost_or_doubled(
    local_ray: None, images: Path, local: dict[str, tuple[np.ndarray | None, str]]
) -> None:
    """SIGKILL an actor while it works: Ray restarts it and reruns its batch (decoder.ray.datasets' guarantee)."""
    from decoder.ray import predict_paths

    paths = sorted(local)[::2]  # ~550 images in 18 blocks: a few seconds of work, long enough to kill an actor
    results = predict_paths(paths, LENET, batch_size=32, actors=2)
    seen: list[int] = []
    killed: list[int] = []
    for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
        seen.extend(batch["position"].tolist())
        for name, probabilities, error in zip(batch["path"], batch["probabilities"], batch["error"], strict=True):
            expected, message = local[str(name)]
            assert error == message
            if expected is not None:
                np.testing.assert_array_equal(probabilities, expected)
        if not killed:
            actors = _actor_processes()
            busy = [pid for pid, title in actors.items() if "ImagePredictor)." in title] or list(actors)
            if busy:
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
    assert killed, "no actor process found to kill"
    assert not Path(f"/proc/{killed[0]}").exists() or "ImagePredictor" not in Path(
        f"/proc/{killed[0]}/cmdline"
    ).read_text(errors="replace")
    assert sorted(seen) == list(range(len(paths)))  # every row exactly once
