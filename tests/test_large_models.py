"""Large models: weights read without copies, written streamed, and as ONNX external data past the limit.

The VGG-16-sized measurement (528 MB caffemodel) lives in ``scripts/benchmark.py --convert``;
here a one-layer net with a 100 MB weight checks the same property in a few seconds: the
conversion's peak memory stays well under 2.5x the caffemodel (it was ~7x when every weight
was copied by protobuf, numpy, onnx and the checker). External data is tested with the
size limit lowered through ``DECODER_EXTERNAL_DATA_BYTES`` on a small model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from decoder import DecoderError, Model
from decoder.caffe_io import blob_to_array, read_caffemodel, read_weights, upgraded_layers
from decoder.caffe_proto import caffe_pb2
from decoder.cli.main import main
from decoder.onnx_writer import ENV_LIMIT
from scripts.caffe_writer import write_caffemodel
from scripts.model_zoo import write_model
from tests.shared_data import MODELS, require

REPO = Path(__file__).resolve().parents[1]


def protobuf_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """The weights as protobuf parses them (the reference for the zero-copy scanner)."""
    weights: dict[str, list[np.ndarray]] = {}
    for layer in upgraded_layers(read_caffemodel(path)):
        if layer.blobs and layer.name not in weights:
            weights[layer.name] = [blob_to_array(b) for b in layer.blobs]
    return weights


def assert_same_weights(ours: dict[str, list[np.ndarray]], reference: dict[str, list[np.ndarray]]) -> None:
    assert list(ours) == list(reference)
    for name, arrays in reference.items():
        assert len(ours[name]) == len(arrays), name
        for mine, theirs in zip(ours[name], arrays, strict=True):
            assert mine.dtype == np.float32 and mine.shape == theirs.shape, name
            np.testing.assert_array_equal(mine, theirs)


def test_weights_are_views_of_the_file_and_equal_protobufs(tmp_path: Path) -> None:
    files = write_model("googlenet", tmp_path / "g", seed=1)
    weights = read_weights(files.caffemodel)
    assert_same_weights(weights, protobuf_weights(files.caffemodel))
    conv = weights["conv1/7x7_s2"][0]
    assert conv.shape == (64, 3, 7, 7)
    assert not conv.flags.owndata and not conv.flags.writeable  # a view of the file's bytes, no copy
    assert isinstance(conv.base, bytes) or isinstance(getattr(conv.base, "base", None), bytes)


@pytest.mark.parametrize(
    "model",
    ["lenet_mnist_v1_everpeace/lenet_iter_10000.caffemodel", "mtcnn_kpzhang/det1.caffemodel"],
)
def test_real_caffemodels_read_the_same_as_protobuf(model: str) -> None:
    path = require(MODELS / model)
    assert_same_weights(read_weights(path), protobuf_weights(path))


def test_unpacked_and_double_blobs_are_read_by_the_fallback(tmp_path: Path) -> None:
    """Floats written one by one (not packed) or as double_data still read, with protobuf's values."""
    net = caffe_pb2.NetParameter(name="odd")
    layer = net.layer.add(name="ip", type="InnerProduct")
    blob = layer.blobs.add()
    blob.shape.dim.extend([2, 3])
    blob.double_data.extend([0.5, -1.0, 2.0, 3.0, 4.0, 5.0])
    legacy = layer.blobs.add(num=1, channels=1, height=1, width=2)
    legacy.data.extend([7.0, 8.0])
    path = tmp_path / "odd.caffemodel"
    path.write_bytes(net.SerializeToString())
    assert_same_weights(read_weights(path), protobuf_weights(path))
    # The same first blob with its floats unpacked (field 5, wire type 5, one value at a time).
    floats = b"".join(b"\x2d" + np.float32(v).tobytes() for v in (1.0, 2.0))
    shape = caffe_pb2.BlobProto()
    shape.shape.dim.append(2)
    blob_bytes = shape.SerializeToString() + floats
    layer_bytes = b"\x0a\x02ip" + b"\x3a" + bytes([len(blob_bytes)]) + blob_bytes
    unpacked = tmp_path / "unpacked.caffemodel"
    unpacked.write_bytes(b"\xa2\x06" + bytes([len(layer_bytes)]) + layer_bytes)
    assert read_weights(unpacked)["ip"][0].tolist() == [1.0, 2.0]


def test_truncated_caffemodel_is_still_one_clear_error(tmp_path: Path) -> None:
    files = write_model("lenet", tmp_path / "l")
    data = files.caffemodel.read_bytes()
    files.caffemodel.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecoderError, match="truncated or corrupt") as caught:
        read_weights(files.caffemodel)
    assert str(caught.value).startswith(f"{files.caffemodel}: ")


PEAK_SCRIPT = """
import json, sys
from pathlib import Path
from decoder.cli.main import main
code = main(["convert", sys.argv[1], "-o", sys.argv[2], "--mean-kind", "none"])
status = open("/proc/self/status").read()
peak = int(status.split("VmHWM:")[1].split()[0]) * 1024
print(json.dumps({"code": code, "peak": peak}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from /proc")
def test_converting_a_big_caffemodel_costs_under_2_5x_its_size(tmp_path: Path) -> None:
    """A 100 MB fully connected layer converts with a peak RSS under 2.5x the caffemodel (imports included)."""
    outputs, inputs = 1000, 25_600
    net = caffe_pb2.NetParameter(name="wide")
    net.input.append("data")
    net.input_shape.add().dim.extend([1, 1, 160, 160])
    layer = net.layer.add(name="fc", type="InnerProduct", bottom=["data"], top=["fc"])
    layer.inner_product_param.num_output = outputs
    net.layer.add(name="prob", type="Softmax", bottom=["fc"], top=["prob"])
    folder = tmp_path / "wide"
    folder.mkdir()
    (folder / "deploy.prototxt").write_text(str(net))
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((outputs, inputs), dtype=np.float32)
    write_caffemodel(folder / "w.caffemodel", [(layer, [weight, np.zeros(outputs, np.float32)])])
    size = (folder / "w.caffemodel").stat().st_size
    result = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(folder), str(tmp_path / "wide.onnx")],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, result.stderr
    assert report["peak"] < 2.5 * size, f"peak RSS {report['peak'] / 2**20:.0f} MB for a {size / 2**20:.0f} MB model"
    stored = onnx.load(str(tmp_path / "wide.onnx"))
    fc = next(t for t in stored.graph.initializer if t.name.startswith("fc/weight"))
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(fc), weight)


def test_external_data_past_the_limit_loads_and_predicts_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    files = write_model("cifar10_quick", tmp_path / "c", seed=2)
    whole, split = tmp_path / "whole.onnx", tmp_path / "split.onnx"
    assert main(["convert", str(files.folder), "-o", str(whole)]) == 0
    assert not (tmp_path / "whole.onnx.data").exists()
    monkeypatch.setenv(ENV_LIMIT, "100000")
    assert main(["convert", str(files.folder), "-o", str(split)]) == 0
    captured = capsys.readouterr()
    assert "split.onnx.data (ONNX external data)" in captured.out + captured.err
    data = tmp_path / "split.onnx.data"
    assert data.stat().st_size > 400_000 and split.stat().st_size < 100_000
    model = onnx.load(str(split), load_external_data=False)
    external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    offsets = [int({e.key: e.value for e in t.external_data}["offset"]) for t in external]
    assert offsets and all(offset % 4096 == 0 for offset in offsets)
    # Moved away from the working directory, the pair still loads: the location is relative to the .onnx.
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    os.replace(split, moved / "split.onnx")
    os.replace(data, moved / "split.onnx.data")
    blob = np.random.default_rng(0).uniform(-100, 100, (3, 3, 32, 32)).astype(np.float32)
    expected = Model.load(whole).run(blob)["prob"]
    np.testing.assert_array_equal(Model.load(moved / "split.onnx").run(blob)["prob"], expected)
    loaded, reference = onnx.load(str(moved / "split.onnx")), onnx.load(str(whole))
    assert loaded.graph.node == reference.graph.node and loaded.metadata_props == reference.metadata_props
    arrays = {t.name: onnx.numpy_helper.to_array(t) for t in loaded.graph.initializer}
    for tensor in reference.graph.initializer:
        np.testing.assert_array_equal(arrays[tensor.name], onnx.numpy_helper.to_array(tensor))


def test_a_failed_write_leaves_neither_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = write_model("lenet", tmp_path / "l")
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv(ENV_LIMIT, "1000")

    def full_disk(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("decoder.onnx_writer.os.fsync", full_disk)
    with pytest.raises(DecoderError, match=r"\(No space left on device\); nothing was written"):
        from decoder.conversion import convert
        from decoder.sources import open_sources

        with open_sources(files.folder) as sources:
            convert(sources, out / "m.onnx")
    assert list(out.iterdir()) == []


def test_streamed_caffemodel_parses_to_the_protobuf_message(tmp_path: Path) -> None:
    """scripts/caffe_writer.write_caffemodel: the same NetParameter as protobuf's own serialization."""
    rng = np.random.default_rng(0)
    layer = caffe_pb2.LayerParameter(name="conv", type="Convolution", bottom=["data"], top=["conv"])
    layer.convolution_param.num_output = 4
    arrays = [rng.standard_normal((4, 3, 3, 3)).astype(np.float32), rng.standard_normal(4).astype(np.float32)]
    write_caffemodel(tmp_path / "s.caffemodel", [(layer, arrays)], name="net")
    expected = caffe_pb2.NetParameter(name="net")
    copy = expected.layer.add()
    copy.CopyFrom(layer)
    for array in arrays:
        blob = copy.blobs.add()
        blob.shape.dim.extend(array.shape)
        blob.data.extend(array.ravel().tolist())
    assert caffe_pb2.NetParameter.FromString((tmp_path / "s.caffemodel").read_bytes()) == expected


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**31 - 1, 2**35 + 7, 2**63 - 1])
def test_varints_round_trip(value: int) -> None:
    from decoder.wire import encode_varint, varint

    encoded = encode_varint(value)
    assert varint(encoded, 0, len(encoded)) == (value, len(encoded))
