"""Property-based fuzzing of every reader: the only outcomes allowed are a result or DecoderError.

Hypothesis mutates valid files (bit flips, overwritten and inserted bytes, deleted and
duplicated spans, truncation; for text, also swapped tokens and interesting numbers) and
throws them at the readers users reach through the CLI: caffemodels, prototxts (through
to a converted ONNX graph), mean binaryprotos, archives (extraction and model picking),
images, and the metadata of a .onnx. Any other exception is a bug: the CLI would report
it as an internal error (exit 1) instead of naming the file and the problem. Every
DecoderError must also name the file it is about.

Budget: ``DECODER_FUZZ_EXAMPLES`` examples per target (default 60), no deadline. By
default each run is derandomized, so CI is reproducible; setting the variable (say to
2000) also turns on fresh random exploration, for a longer local fuzzing session.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from decoder.caffe_io import load_net, read_binaryproto, read_caffemodel, read_prototxt, read_weights
from decoder.converter import convert_net
from decoder.errors import DecoderError
from decoder.layers.registry import supported_types
from decoder.preprocess import load_image, preprocess, resize_mean
from decoder.sources import open_sources
from decoder.spec import PreprocessSpec, read_graph_metadata
from tests.test_bad_inputs import NOT_OURS, SIDE, mean_blob, model_files

T = TypeVar("T")

_ENV_EXAMPLES = os.environ.get("DECODER_FUZZ_EXAMPLES")
EXAMPLES = int(_ENV_EXAMPLES) if _ENV_EXAMPLES else 60
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=_ENV_EXAMPLES is None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

GOOD = model_files()
DEPLOY = GOOD["deploy.prototxt"]
CAFFEMODEL = GOOD["snapshot_iter_10.caffemodel"]
MEAN = GOOD["mean.binaryproto"]


# --------------------------------------------------------------------------- mutations


@st.composite
def mutated(draw: st.DrawFn, seed: bytes, max_edits: int = 6) -> bytes:
    """``seed`` with a few random byte-level edits: what disk rot, bad transfers and forks do."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, max_edits))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "duplicate", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x0A, 0x22, 0x7B, 0x7D, 0x2F, 0x2E]))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 32))]
        elif op == "duplicate":
            span = bytes(data[at : at + draw(st.integers(1, 64))])
            data[at:at] = span
        elif op == "truncate":
            del data[at:]
    return bytes(data)


INTERESTING_NUMBERS = ["0", "-1", "1", "2", "3", "7", "65535", "2147483647", "2147483648", "-2147483648", "1e9"]
LAYER_TYPES = sorted({converter.caffe_type for converter in supported_types()} | {"Input", "Data", "Bogus"})


@st.composite
def mutated_prototxt(draw: st.DrawFn) -> bytes:
    """The deploy net with token-level edits (numbers, layer types, blob names, lines) and byte edits."""
    lines = DEPLOY.decode().splitlines()
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["number", "type", "blob", "drop line", "copy line", "add field"]))
        at = draw(st.integers(0, len(lines) - 1))
        line = lines[at]
        if op == "number" and re.search(r"\d", line):
            lines[at] = re.sub(r"-?\d+(\.\d+)?", draw(st.sampled_from(INTERESTING_NUMBERS)), line, count=1)
        elif op == "type":
            lines = [
                re.sub(r'type: "\w+"', f'type: "{draw(st.sampled_from(LAYER_TYPES))}"', text) if i == at else text
                for i, text in enumerate(lines)
            ]
        elif op == "blob" and ("bottom" in line or "top" in line):
            lines[at] = re.sub(r'"[^"]*"', f'"{draw(st.sampled_from(["data", "conv1", "ip1", "prob", "x"]))}"', line)
        elif op == "drop line":
            del lines[at]
        elif op == "copy line":
            lines.insert(at, line)
        elif op == "add field":
            field = draw(
                st.sampled_from(
                    ["pad: 1", "stride: 2", "group: 2", "axis: 2", "axis: -1", "bias_term: false", "dilation: 2"]
                )
            )
            lines.insert(at, field)
        if not lines:
            lines = ["name: 'empty'"]
    text = ("\n".join(lines) + "\n").encode()
    return draw(mutated(text, max_edits=2)) if draw(st.booleans()) else text


# --------------------------------------------------------------------------- the property


def result_or_decoder_error(call: Callable[[], T], *names: Path | str) -> T | None:
    """Run ``call``; a DecoderError is fine if it is one line naming one of ``names``."""
    try:
        return call()
    except DecoderError as exc:
        message = str(exc)
        assert "\n" not in message and message.strip()
        assert "internal error" not in message, message
        assert any(str(name) in message for name in names), f"names none of {names}: {message}"
        return None


@pytest.fixture
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder per test function (hypothesis runs many examples in it)."""
    return tmp_path_factory.mktemp("fuzz")


# --------------------------------------------------------------------------- Caffe files


@FUZZ
@given(data=mutated(CAFFEMODEL))
def test_mutated_caffemodels(work: Path, data: bytes) -> None:
    deploy = work / "deploy.prototxt"
    deploy.write_bytes(DEPLOY)
    weights = work / "w.caffemodel"
    weights.write_bytes(data)
    result_or_decoder_error(lambda: read_caffemodel(weights), weights)
    result_or_decoder_error(lambda: read_weights(weights), weights)
    net = result_or_decoder_error(lambda: load_net(deploy, weights), weights, deploy)
    if net is not None:
        result_or_decoder_error(lambda: convert_net(net), weights, deploy)


@FUZZ
@given(data=mutated_prototxt())
def test_mutated_prototxts_read_and_convert(work: Path, data: bytes) -> None:
    deploy = work / "deploy.prototxt"
    deploy.write_bytes(data)
    weights = work / "w.caffemodel"
    weights.write_bytes(CAFFEMODEL)
    result_or_decoder_error(lambda: read_prototxt(deploy), deploy)
    net = result_or_decoder_error(lambda: load_net(deploy, weights), deploy)
    if net is not None:
        result_or_decoder_error(lambda: convert_net(net), deploy, weights)


@FUZZ
@given(data=mutated(MEAN), height=st.integers(1, 40), width=st.integers(1, 40))
def test_mutated_binaryprotos(work: Path, data: bytes, height: int, width: int) -> None:
    mean = work / "mean.binaryproto"
    mean.write_bytes(data)
    blob = result_or_decoder_error(lambda: read_binaryproto(mean), mean)
    if blob is not None and blob.ndim >= 3:
        image = blob.reshape(blob.shape[-3:]) if blob.size == np.prod(blob.shape[-3:]) else blob[0]
        resized = result_or_decoder_error(lambda: resize_mean(image, height, width, path=mean), mean)
        if resized is not None:
            assert resized.shape == (image.shape[0], height, width) and resized.dtype == np.float32


@FUZZ
@given(
    channels=st.integers(0, 4),
    height=st.integers(0, 70),
    width=st.integers(0, 70),
    values=st.sampled_from([0.0, 127.5, 255.0, -1.0, 256.0, float("nan")]),
)
def test_binaryprotos_of_any_shape(work: Path, channels: int, height: int, width: int, values: float) -> None:
    """Well-formed blobs of every size and value range: the mean reader and resizer cope."""
    mean = work / "mean.binaryproto"
    mean.write_bytes(mean_blob(channels, height, width, np.full((channels, height, width), values)))
    blob = result_or_decoder_error(lambda: read_binaryproto(mean), mean)
    if blob is not None:
        result_or_decoder_error(lambda: resize_mean(blob.reshape(blob.shape[-3:]), SIDE, SIDE, path=mean), mean)


# --------------------------------------------------------------------------- archives


def _archive_seeds() -> dict[str, bytes]:
    seeds = {}
    for suffix, mode in ((".tar.gz", "w:gz"), (".tar", "w"), (".tar.bz2", "w:bz2"), (".tar.xz", "w:xz")):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode=mode) as tar:
            for name, data in GOOD.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        seeds[suffix] = buffer.getvalue()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in GOOD.items():
            archive.writestr(name, data)
    seeds[".zip"] = buffer.getvalue()
    return seeds


ARCHIVES = _archive_seeds()


@st.composite
def mutated_archive(draw: st.DrawFn) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(sorted(ARCHIVES)))
    return suffix, draw(mutated(ARCHIVES[suffix], max_edits=4))


@FUZZ
@given(case=mutated_archive())
def test_mutated_archives_through_open_sources(work: Path, case: tuple[str, bytes]) -> None:
    """Extraction and model picking: a result or DecoderError; the private folder always goes."""
    suffix, data = case
    root = Path(tempfile.mkdtemp(dir=work))
    try:
        archive = root / f"model{suffix}"
        archive.write_bytes(data)
        scratch = root / "tmp"
        scratch.mkdir()
        previous, tempfile.tempdir = tempfile.tempdir, str(scratch)
        try:
            with open_sources(archive) as sources:
                assert sources.prototxt.is_file() and sources.caffemodel.is_file()
                inside = scratch.resolve()
                assert inside in sources.prototxt.resolve().parents
        except DecoderError as exc:
            assert str(archive) in str(exc) and "\n" not in str(exc)
        finally:
            tempfile.tempdir = previous
        assert [p.name for p in scratch.iterdir() if p.name not in NOT_OURS] == [], "extraction folder left behind"
        assert sorted(p.name for p in root.iterdir()) == sorted([archive.name, "tmp"]), "written outside"
    finally:
        shutil.rmtree(root)


# --------------------------------------------------------------------------- images


def _image_seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    seeds = {}
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("PNG", "RGB", {}),
        ("PNG", "P", {"transparency": 0}),
        ("PNG", "LA", {}),
        ("PNG", "I;16", {}),
        ("JPEG", "RGB", {"quality": 90}),
        ("JPEG", "L", {}),
        ("JPEG", "CMYK", {}),
        ("GIF", "P", {}),
        ("BMP", "RGB", {}),
        ("TIFF", "RGB", {}),
        ("TIFF", "F", {}),
        ("WEBP", "RGB", {}),
        ("PPM", "RGB", {}),
    ]
    for fmt, mode, options in cases:
        if mode == "I;16":
            image = Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257)
        elif mode == "F":
            image = Image.fromarray(rgb[:, :, 0].astype(np.float32) / 255)
        else:
            image = Image.fromarray(rgb).convert(mode)
        buffer = io.BytesIO()
        try:
            image.save(buffer, fmt, **options)
        except (OSError, KeyError, ValueError):  # a Pillow built without that codec
            continue
        seeds[f"{fmt}-{mode}"] = buffer.getvalue()
    return seeds


IMAGES = _image_seeds()
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tiff", "WEBP": ".webp", "PPM": ".ppm"}


@st.composite
def mutated_image(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(sorted(IMAGES)))
    return kind, draw(mutated(IMAGES[kind]))


@FUZZ
@given(case=mutated_image(), channels=st.sampled_from([1, 3]), mode=st.sampled_from(["squash", "crop", "fill"]))
def test_mutated_images(work: Path, case: tuple[str, bytes], channels: int, mode: str) -> None:
    kind, data = case
    path = work / f"image{SUFFIX[kind.split('-')[0]]}"
    path.write_bytes(data)
    pixels = result_or_decoder_error(lambda: load_image(path, channels), path)
    if pixels is not None:
        assert pixels.dtype == np.uint8 and pixels.ndim == (2 if channels == 1 else 3) and min(pixels.shape[:2]) > 0
        spec = PreprocessSpec(channels=channels, height=SIDE, width=SIDE + 3, resize_mode=mode)  # type: ignore[arg-type]
        blob = result_or_decoder_error(lambda: preprocess(path, spec), path)
        if blob is not None:
            assert blob.shape == (channels, SIDE, SIDE + 3) and np.isfinite(blob).all()


# --------------------------------------------------------------------------- .onnx metadata


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


@st.composite
def forged_metadata(draw: st.DrawFn) -> dict[str, str]:
    """Real metadata with one entry replaced, one field changed, or one key removed."""
    import json

    good = PreprocessSpec(
        channels=1, height=SIDE, width=SIDE, mean_kind="image", mean=np.full((1, SIDE, SIDE), 3.0, np.float32)
    ).to_metadata()
    props = dict(good)
    key = draw(st.sampled_from(sorted(props)))
    action = draw(st.sampled_from(["field", "replace", "remove", "text"]))
    if action == "field" and key == "decoder.spec":
        body = json.loads(props[key])
        body[draw(st.sampled_from([*sorted(body), "extra"]))] = draw(JSON_VALUES)
        props[key] = json.dumps(body)
    elif action == "replace":
        props[key] = json.dumps(draw(JSON_VALUES))
    elif action == "remove":
        del props[key]
    else:
        props[key] = draw(st.text(max_size=40))
    return props


@FUZZ
@given(props=forged_metadata())
def test_forged_onnx_metadata(props: dict[str, str]) -> None:
    spec = result_or_decoder_error(lambda: PreprocessSpec.from_metadata(props, "model.onnx"), "model.onnx")
    if spec is not None:
        blob = result_or_decoder_error(
            lambda: preprocess(np.zeros((5, 7, 3), np.uint8), spec),
            "",  # an array has no file name; any one-line DecoderError will do
        )
        if blob is not None:
            assert blob.shape == (spec.channels, spec.height, spec.width)


GOOD_GRAPH = {
    "outputs": ["prob"],
    "score_output": "prob",
    "score_is_softmax": True,
    "layers": [{"name": "prob", "type": "Softmax", "tops": ["prob"], "nodes": ["prob"]}],
    "caffe_net": "tiny",
}


@FUZZ
@given(
    key=st.sampled_from([*sorted(GOOD_GRAPH), "layers[0]", "layers[0].tops", "whole"]),
    value=JSON_VALUES,
)
def test_forged_graph_metadata(key: str, value: object) -> None:
    """``decoder.graph`` as read by spec.read_graph_metadata: every field may be forged."""
    import copy
    import json

    body: Any = copy.deepcopy(GOOD_GRAPH)
    if key == "whole":
        body = value
    elif key == "layers[0]":
        body["layers"][0] = value
    elif key == "layers[0].tops":
        body["layers"][0]["tops"] = value
    else:
        body[key] = value
    props = {"decoder.graph": json.dumps(body)}
    graph = result_or_decoder_error(lambda: read_graph_metadata(props, "model.onnx"), "model.onnx")
    if graph is not None:
        assert all(isinstance(t, str) for layer in graph["layers"] for t in layer["tops"])
        assert isinstance(graph["score_output"], str)
