"""Model's prediction paths, the batch pipeline and the PNG fast path, against plain numpy and Pillow.

The model here is written directly with onnx.helper (Flatten -> Gemm -> Softmax) and our
metadata, so the expected probabilities are an independent numpy computation: Pillow
pixels, HWC -> CHW, RGB -> BGR, minus the mean image, x @ W.T + b, softmax.
"""

from __future__ import annotations

import io
import json
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from decoder import DecoderError, Model, fast_png
from decoder.batching import prepare_batch, prepared_batches
from decoder.spec import GRAPH_KEY, PreprocessSpec


@dataclass
class TinyModel:
    """A written .onnx and the numbers needed to recompute its output in numpy."""

    path: Path
    weight: np.ndarray  # (K, C*H*W)
    bias: np.ndarray  # (K,)
    mean: np.ndarray  # (C, H, W), network (BGR) order
    labels: tuple[str, ...]
    channels: int
    size: int

    def reference(self, image: Path | np.ndarray) -> np.ndarray:
        """Probabilities computed without our code: Pillow pixels -> DIGITS blob -> Gemm -> softmax."""
        if isinstance(image, np.ndarray):
            pixels = image
        else:
            with Image.open(image) as opened:
                pixels = np.asarray(opened.convert("L" if self.channels == 1 else "RGB"))
        if self.channels == 1:
            chw = pixels[np.newaxis].astype(np.float32)
        else:
            chw = pixels.transpose(2, 0, 1)[::-1].astype(np.float32)  # RGB -> BGR
        scores = (chw - self.mean).reshape(-1).astype(np.float64) @ self.weight.T.astype(np.float64) + self.bias
        exp = np.exp(scores - scores.max())
        return exp / exp.sum()


def write_tiny_model(
    folder: Path, channels: int = 1, size: int = 8, labels: Sequence[str] = ("cat", "dog", "eel"), seed: int = 0
) -> TinyModel:
    """A softmax classifier over raw pixels with DIGITS-style metadata (mean image, labels)."""
    rng = np.random.default_rng(seed)
    features = channels * size * size
    weight = rng.normal(0, 0.2 / features, (len(labels), features)).astype(np.float32)
    bias = rng.normal(0, 0.1, len(labels)).astype(np.float32)
    mean = rng.integers(60, 200, (channels, size, size)).astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["data"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w", "b"], ["ip"], transB=1),
        helper.make_node("Softmax", ["ip"], ["prob"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", channels, size, size])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", len(labels)])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    spec = PreprocessSpec(channels, size, size, mean_kind="image", mean=mean, labels=tuple(labels))
    metadata = spec.to_metadata()
    metadata[GRAPH_KEY] = json.dumps(
        {"outputs": ["prob"], "score_output": "prob", "score_is_softmax": True, "layers": []}
    )
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    path = folder / "tiny.onnx"
    onnx.save(model, path)
    return TinyModel(path, weight, bias, mean, tuple(labels), channels, size)


def write_images(folder: Path, count: int, channels: int = 1, size: int = 8, seed: int = 1) -> list[Path]:
    """``count`` random PNGs of the model's size, named so that sorted order is creation order."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        shape = (size, size) if channels == 1 else (size, size, 3)
        path = folder / f"{index:04d}.png"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def tiny(tmp_path: Path) -> TinyModel:
    return write_tiny_model(tmp_path)


# --------------------------------------------------------------------------- predictions


@pytest.mark.parametrize(("workers", "kind"), [(0, "thread"), (1, "thread"), (3, "thread"), (2, "process")])
def test_batch_predictions_equal_the_numpy_reference_in_input_order(
    tmp_path: Path, tiny: TinyModel, workers: int, kind: str
) -> None:
    paths = write_images(tmp_path / "images", 300)  # past FAST_PATH_AFTER: both decoders are used
    model = Model.load(tiny.path)
    results = list(model.predict_batches(paths, top_k=3, batch_size=32, workers=workers, kind=kind))  # type: ignore[arg-type]
    predictions = [p for r in results for p in r.predictions]
    assert [p.image for p in predictions] == [str(p) for p in paths]
    assert [q for r in results for q in r.positions] == list(range(300))
    for prediction, path in zip(predictions, paths, strict=True):
        expected = tiny.reference(path)
        assert prediction.index == int(np.argmax(expected))
        assert prediction.label == tiny.labels[prediction.index]
        assert prediction.probability == pytest.approx(expected.max(), abs=1e-5)
        assert [r.index for r in prediction.top_k] == list(np.argsort(-expected, kind="stable")[:3])


def test_colour_model_gets_bgr_planes_from_both_decoders(tmp_path: Path) -> None:
    tiny = write_tiny_model(tmp_path, channels=3, size=6, labels=("a", "b", "c", "d"), seed=5)
    paths = write_images(tmp_path / "images", 40, channels=3, size=6)
    model = Model.load(tiny.path)
    expected = np.array([tiny.reference(p) for p in paths])
    for fast in (False, True):  # Pillow, then OpenCV's PNG decoder (BGR out, converted back)
        batch = prepare_batch(paths, 0, model.spec, fast=fast)  # type: ignore[arg-type]
        probabilities = model.probabilities(batch.blob)
        np.testing.assert_allclose(probabilities, expected, atol=1e-5)


def test_grey_batch_fast_path_gives_the_pillow_blob_in_a_mixed_batch(tmp_path: Path, tiny: TinyModel) -> None:
    """Same-size grey PNGs take the batched cast/mean; every other item (other size, colour,
    JPEG, array, broken file) its usual path: the blob, rows and failures match Pillow's exactly."""
    folder = tmp_path / "mixed"
    grey = write_images(folder / "grey", 5)
    other = write_images(folder / "big", 1, size=11, seed=2) + write_images(folder / "rgb", 1, channels=3, seed=3)
    jpeg = folder / "photo.jpg"
    Image.fromarray(np.full((8, 8), 77, np.uint8)).save(jpeg)
    broken = folder / "broken.png"
    broken.write_bytes(grey[0].read_bytes()[:40])
    array = np.arange(64, dtype=np.uint8).reshape(8, 8)
    items = [grey[0], other[0], grey[1], broken, jpeg, grey[2], array, other[1], grey[3], grey[4]]
    model = Model.load(tiny.path)
    assert model.spec is not None
    slow = prepare_batch(items, 10, model.spec, fast=False)
    fast = prepare_batch(items, 10, model.spec, fast=True)
    assert fast.positions == slow.positions == [10, 11, 12, 14, 15, 16, 17, 18, 19]
    assert fast.names == slow.names
    assert [(f.position, str(f.error)) for f in fast.failures] == [(f.position, str(f.error)) for f in slow.failures]
    assert fast.blob.dtype == np.float32
    np.testing.assert_array_equal(fast.blob, slow.blob)
    only_grey = prepare_batch(grey, 0, model.spec, fast=True)  # the all-grey batch: one cast for all rows
    np.testing.assert_array_equal(only_grey.blob, prepare_batch(grey, 0, model.spec, fast=False).blob)


@pytest.mark.parametrize(("batch_size", "fast_reads"), [(32, 300 - 256), (256, 300)])
def test_a_long_input_takes_the_png_fast_path_from_its_first_batch(
    tmp_path: Path, tiny: TinyModel, monkeypatch: pytest.MonkeyPatch, batch_size: int, fast_reads: int
) -> None:
    """Short inputs skip OpenCV's import (cold start); one whose first batch already holds
    FAST_PATH_AFTER images will pay for it anyway, so no image of it goes through Pillow."""
    paths = write_images(tmp_path / "images", 300)
    model = Model.load(tiny.path)
    monkeypatch.delitem(sys.modules, "cv2", raising=False)  # as in a fresh `decode` process
    reads: list[object] = []
    real_read = fast_png.read_png

    def counting_read(path: object) -> np.ndarray | None:
        reads.append(path)
        return real_read(path)  # type: ignore[arg-type]

    monkeypatch.setattr(fast_png, "read_png", counting_read)
    for workers in (0, 2):
        reads.clear()
        results = list(model.predict_batches(paths, batch_size=batch_size, workers=workers))
        assert sum(len(r.positions) for r in results) == 300
        assert len(reads) == fast_reads


def test_worker_threads_decode_one_at_a_time_but_infer_concurrently(
    tmp_path: Path, tiny: TinyModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fast-path PNG reading is GIL-bound (two threads at it only trade the GIL); inference is not.

    Inference is made much slower than reading here, so a second worker finishes reading
    while the first is still inferring: their calls overlap unless something serialises them."""
    import threading
    import time

    from decoder import batching

    paths = write_images(tmp_path / "images", 64)
    model = Model.load(tiny.path)
    active = {"decode": 0, "infer": 0}
    most = {"decode": 0, "infer": 0}
    guard = threading.Lock()

    def tracked(kind: str, function: object, seconds: float) -> object:
        def wrapper(*args: object) -> object:
            with guard:
                active[kind] += 1
                most[kind] = max(most[kind], active[kind])
            time.sleep(seconds)  # long enough for the other workers to arrive
            try:
                return function(*args)  # type: ignore[operator]
            finally:
                with guard:
                    active[kind] -= 1

        return wrapper

    monkeypatch.delitem(sys.modules, "cv2", raising=False)  # a short input: take the fast path anyway
    monkeypatch.setattr(batching, "FAST_PATH_AFTER", 0)
    monkeypatch.setattr(fast_png, "read_png", tracked("decode", fast_png.read_png, 0.002))
    batches = list(
        prepared_batches(paths, model.spec, batch_size=8, workers=3, infer=tracked("infer", model.probabilities, 0.1))  # type: ignore[arg-type]
    )
    assert [q for b in batches for q in b.positions] == list(range(64))
    assert most["decode"] == 1
    assert most["infer"] >= 2


def test_each_batch_is_one_session_call(tmp_path: Path, tiny: TinyModel) -> None:
    paths = write_images(tmp_path / "images", 100)
    model = Model.load(tiny.path)
    shapes: list[tuple[int, ...]] = []
    real_run = model.session.run

    def spying_run(names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        shapes.append(feeds["data"].shape)
        return real_run(names, feeds)

    model.session.run = spying_run  # type: ignore[method-assign]
    assert len(model.predict(paths, batch_size=32)) == 100
    assert sorted(shapes, reverse=True) == [(32, 1, 8, 8)] * 3 + [(4, 1, 8, 8)]  # workers run concurrently


def test_default_batch_size_of_a_model_without_cost_follows_its_input(tmp_path: Path, tiny: TinyModel) -> None:
    """No ``decoder.cost`` metadata (a foreign or older file): judged small by its 8x8 input, batch 256."""
    model = Model.load(tiny.path)
    assert model.plan.cost is None and model.plan.small
    assert model.default_batch_size() == 256


def test_predict_iter_streams_and_reads_only_a_few_batches_ahead(tmp_path: Path, tiny: TinyModel) -> None:
    paths = write_images(tmp_path / "images", 10)
    pulled = 0

    def endless() -> Iterator[Path]:
        nonlocal pulled
        while True:
            pulled += 1
            yield paths[pulled % len(paths)]

    model = Model.load(tiny.path)
    stream = model.predict_iter(endless(), batch_size=16, workers=2)
    first = [next(stream) for _ in range(40)]
    assert len(first) == 40
    # 40 yielded = 3 batches consumed; at most workers + 1 more prepared ahead (plus one being cut).
    assert pulled <= 16 * (3 + 2 + 1 + 1)
    stream.close()  # the pool shuts down with the generator


def test_arrays_and_single_items(tmp_path: Path, tiny: TinyModel) -> None:
    model = Model.load(tiny.path)
    rng = np.random.default_rng(7)
    arrays = [rng.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(5)]
    predictions = model.predict(arrays, batch_size=2)
    assert [p.image for p in predictions] == [f"<array {i}>" for i in range(5)]
    assert [p.index for p in predictions] == [int(np.argmax(tiny.reference(a))) for a in arrays]
    single = model.predict(arrays[3])
    assert len(single) == 1 and single[0].index == predictions[3].index
    (from_pil,) = model.predict(Image.fromarray(arrays[3]))
    assert from_pil.index == predictions[3].index and from_pil.image == "<image 0>"


def test_run_takes_preprocessed_blobs(tmp_path: Path, tiny: TinyModel) -> None:
    model = Model.load(tiny.path)
    paths = write_images(tmp_path / "images", 4)
    blob = model.preprocess(paths)
    outputs = model.run(blob)
    assert set(outputs) == {"prob"} and outputs["prob"].shape == (4, 3)
    np.testing.assert_allclose(outputs["prob"], [tiny.reference(p) for p in paths], atol=1e-5)
    with pytest.raises(DecoderError, match="rejected an input of shape"):
        model.run(np.zeros((1, 3, 8, 8), np.float32))


def test_broken_images_are_reported_with_their_position_and_the_rest_predicted(tmp_path: Path, tiny: TinyModel) -> None:
    paths = write_images(tmp_path / "images", 20)
    paths[3].write_bytes(paths[3].read_bytes()[:40])  # truncated
    paths[11].write_bytes(b"not an image at all")
    model = Model.load(tiny.path)
    results = list(model.predict_batches(paths, batch_size=8, workers=1))
    failures = [f for r in results for f in r.failures]
    assert [f.position for f in failures] == [3, 11]
    assert all(str(paths[f.position]) in str(f.error) for f in failures)
    assert [q for r in results for q in r.positions] == [i for i in range(20) if i not in (3, 11)]

    stream = model.predict_iter(paths, batch_size=8)
    assert [next(stream).image for _ in range(3)] == [str(p) for p in paths[:3]]
    with pytest.raises(DecoderError, match=r"0003\.png"):
        next(stream)
    kept = list(model.predict_iter(paths, batch_size=8, skip_errors=True))
    assert len(kept) == 18


def test_preprocessing_errors_without_a_path_name_the_item(tmp_path: Path, tiny: TinyModel) -> None:
    model = Model.load(tiny.path)
    batch = next(prepared_batches([np.zeros((4, 4), np.float64)], model.spec, workers=0))  # type: ignore[arg-type]
    assert batch.failures[0].error.path == "<array 0>"


# --------------------------------------------------------------------------- PNG fast path


def png_bytes(array: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG", **options)
    return buffer.getvalue()


def pillow_pixels(data: bytes) -> np.ndarray | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return np.asarray(image)
    except Exception:
        return None


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    colour=st.booleans(),
    level=st.integers(0, 9),
    seed=st.integers(0, 2**16),
)
def test_fast_path_gives_pillows_pixels(height: int, width: int, colour: bool, level: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (height, width, 3) if colour else (height, width)
    # Smooth-ish content exercises every PNG row filter (Sub/Up/Average/Paeth).
    array = np.cumsum(rng.integers(0, 4, shape), axis=1).astype(np.uint8)
    data = png_bytes(array, compress_level=level)
    pixels = fast_png.decode_png(data)
    assert pixels is not None
    np.testing.assert_array_equal(pixels, pillow_pixels(data))


@pytest.mark.parametrize(
    ("mode", "options"),
    [("LA", {}), ("RGBA", {}), ("P", {}), ("I;16", {}), ("L", {"transparency": 7}), ("1", {})],
)
def test_fast_path_declines_what_needs_interpretation(mode: str, options: dict[str, object]) -> None:
    image = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    assert fast_png.decode_png(buffer.getvalue()) is None


def test_fast_path_takes_pillow_and_opencv_files_and_declines_metadata_libpng_checks(tmp_path: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    array = np.arange(120, dtype=np.uint8).reshape(10, 12)
    assert fast_png.decode_png(png_bytes(array, dpi=(72, 72))) is not None  # pHYs
    import cv2

    ok, encoded = cv2.imencode(".png", array)
    assert ok
    np.testing.assert_array_equal(fast_png.decode_png(encoded.tobytes()), array)
    info = PngInfo()
    info.add_text("Software", "x")
    assert fast_png.decode_png(png_bytes(array, pnginfo=info)) is None  # tEXt: Pillow's job
    big = np.zeros((1025, 1024), np.uint8)  # past FAST_MAX_PIXELS: Pillow's job too
    assert fast_png.decode_png(png_bytes(big)) is None


def test_fast_path_declines_damaged_files_and_bombs(monkeypatch: pytest.MonkeyPatch) -> None:
    data = png_bytes(np.arange(100, dtype=np.uint8).reshape(10, 10))
    assert fast_png.decode_png(data) is not None
    assert fast_png.decode_png(data[:-1]) is None  # no complete IEND
    assert fast_png.decode_png(data[: len(data) // 2] + data[-12:]) is None  # IDAT cut short
    flipped = bytearray(data)
    flipped[45] ^= 0x10  # inside IDAT: the CRC no longer matches
    assert fast_png.decode_png(bytes(flipped)) is None
    assert fast_png.decode_png(b"GIF89a" + data[6:]) is None
    monkeypatch.setattr("decoder.preprocess.MAX_IMAGE_PIXELS", 99)
    assert fast_png.decode_png(data) is None


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_mutated_pngs_give_pillows_pixels_or_are_declined_silently(
    data: st.DataObject, capfd: pytest.CaptureFixture[str]
) -> None:
    array = np.arange(12 * 9, dtype=np.uint8).reshape(12, 9)
    original = bytearray(png_bytes(array))
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):  # re-seal the chunk CRCs so the mutation reaches the decoder
        mutated = bytearray(_reseal_crcs(bytes(mutated)))
    capfd.readouterr()
    pixels = fast_png.decode_png(bytes(mutated))
    assert capfd.readouterr().err == ""  # libpng never gets a file it would complain about
    if pixels is not None:
        reference = pillow_pixels(bytes(mutated))
        assert reference is not None, "the fast path accepted a file Pillow refuses"
        np.testing.assert_array_equal(pixels, reference)


def _reseal_crcs(data: bytes) -> bytes:
    out = bytearray(data)
    position = 8
    while position + 12 <= len(out):
        length = int.from_bytes(out[position : position + 4], "big")
        end = position + 8 + length
        if end + 4 > len(out):
            break
        out[end : end + 4] = zlib.crc32(out[position + 4 : end]).to_bytes(4, "big")
        position = end + 4
    return bytes(out)
