"""Conversion: the preprocessing, labels and score blob written into the .onnx, from the files.

Each test writes a small Caffe model (seeded random weights) plus the DIGITS side files
it is about, converts it, and checks what a user holding only the .onnx gets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decoder import DecoderError, Model
from decoder.caffe_proto import caffe_pb2
from decoder.cli.main import main
from decoder.conversion import convert
from decoder.sources import open_sources
from tests.caffe_nets import NetBuilder


def small_classifier(folder: Path, channels: int = 3, size: int = 8, classes: int = 4, *, top: str = "prob") -> Path:
    """deploy.prototxt + snapshot_iter_10.caffemodel of a conv -> ip -> softmax net."""
    net = NetBuilder("small", seed=3)
    data = net.input("data", (1, channels, size, size))
    conv = net.layer(
        "Convolution",
        data,
        name="conv1",
        convolution_param={"num_output": 5, "kernel_size": [3]},
        blobs=[(5, channels, 3, 3), (5,)],
    )
    ip = net.layer(
        "InnerProduct",
        conv,
        name="ip1",
        inner_product_param={"num_output": classes},
        blobs=[(classes, 5 * (size - 2) ** 2), (classes,)],
    )
    net.layer("Softmax", ip, top, name=top)
    files = net.write(folder, "deploy")
    files.caffemodel.rename(folder / "snapshot_iter_10.caffemodel")
    return folder


def write_train_val(folder: Path, transform: str) -> None:
    (folder / "train_val.prototxt").write_text(
        'layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST } '
        f"transform_param {{ {transform} }} }}\n"
    )


def write_mean(folder: Path, mean: np.ndarray) -> None:
    blob = caffe_pb2.BlobProto(num=1, channels=mean.shape[0], height=mean.shape[1], width=mean.shape[2])
    blob.data.extend(mean.ravel().tolist())
    (folder / "mean.binaryproto").write_bytes(blob.SerializeToString())


def write_labels(folder: Path, count: int) -> None:
    (folder / "labels.txt").write_text("".join(f"class {i}\n\n" for i in range(count)))


def manual_blob(image_rgb: np.ndarray, mean_bgr: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """DIGITS's blob for a same-size RGB uint8 image, computed by hand."""
    bgr_chw = image_rgb[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)
    return ((bgr_chw - mean_bgr) * scale)[None]


@pytest.fixture
def image_file(tmp_path: Path) -> tuple[Path, np.ndarray]:
    pixels = np.random.default_rng(5).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    path = tmp_path / "image.png"
    Image.fromarray(pixels).save(path)
    return path, pixels


def test_pixel_mean_from_train_val_travels_in_the_onnx(tmp_path: Path, image_file: tuple[Path, np.ndarray]) -> None:
    folder = small_classifier(tmp_path / "model")
    write_train_val(folder, "mean_value: 104 mean_value: 117 mean_value: 123")
    write_labels(folder, 4)
    with open_sources(folder) as sources:
        report = convert(sources, tmp_path / "m.onnx")
    spec = report.spec
    assert spec is not None
    assert (spec.mean_kind, spec.channel_order, spec.scale) == ("pixel", "BGR", 1.0)
    assert spec.mean.tolist() == [104, 117, 123]
    assert spec.labels == ("class 0", "class 1", "class 2", "class 3")

    model = Model.load(tmp_path / "m.onnx")
    path, pixels = image_file
    blob = manual_blob(pixels, np.array([104, 117, 123], np.float32).reshape(3, 1, 1))
    np.testing.assert_array_equal(model.preprocess([path]), blob)
    expected = model.run(blob)["prob"][0]
    prediction = model.predict(path)[0]
    assert prediction.index == int(np.argmax(expected))
    assert prediction.label == f"class {prediction.index}"
    assert prediction.probability == pytest.approx(float(expected.max()), rel=1e-6)


def test_mean_image_of_another_size_is_resized_and_caffe_scale_is_kept(
    tmp_path: Path, image_file: tuple[Path, np.ndarray]
) -> None:
    folder = small_classifier(tmp_path / "model")
    write_train_val(folder, 'scale: 0.5 mean_file: "/srv/digits/jobs/x/mean.binaryproto"')
    write_mean(folder, np.full((3, 16, 16), 100.0, np.float32))
    (folder / "snapshot_iter_10.caffemodel").rename(folder / "weights.caffemodel")  # not a DIGITS layout
    with open_sources(folder) as sources:
        assert not sources.is_digits
        report = convert(sources, tmp_path / "m.onnx")
    assert report.spec.mean_kind == "image"
    assert report.spec.mean.shape == (3, 8, 8)
    np.testing.assert_array_equal(report.spec.mean, 100.0)  # a flat mean stays flat through the resize
    assert report.spec.scale == 0.5  # plain Caffe: transform_param.scale was applied in training
    path, pixels = image_file
    np.testing.assert_allclose(Model.load(tmp_path / "m.onnx").preprocess([path]), manual_blob(pixels, 100.0, 0.5))


def test_digits_models_ignore_transform_scale(tmp_path: Path) -> None:
    folder = small_classifier(tmp_path / "model")
    write_train_val(folder, 'scale: 0.0125 mean_file: "mean.binaryproto"')
    write_mean(folder, np.zeros((3, 8, 8), np.float32))
    with open_sources(folder) as sources:
        assert sources.is_digits  # snapshot_iter_N.caffemodel + mean.binaryproto
        report = convert(sources, tmp_path / "m.onnx")
    assert report.spec.scale == 1.0
    assert any("0.0125" in note for note in report.notes)


def test_no_train_val_and_no_mean_means_no_mean(tmp_path: Path) -> None:
    folder = small_classifier(tmp_path / "model", channels=1)
    with open_sources(folder) as sources:
        report = convert(sources, tmp_path / "m.onnx")
    assert report.spec.mean_kind == "none"
    assert report.spec.mean is None
    assert report.spec.channels == 1


def test_label_count_mismatch_is_refused_and_nothing_is_written(tmp_path: Path, capsys) -> None:
    folder = small_classifier(tmp_path / "model")
    write_labels(folder, 3)
    output = tmp_path / "out" / "m.onnx"
    output.parent.mkdir()
    assert main(["convert", str(folder), "-o", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "labels.txt" in err and "3 labels" in err and "4 classes" in err
    assert list(output.parent.iterdir()) == []


def test_score_blob_is_the_last_output_in_sorted_order_and_softmax_is_applied_once(tmp_path: Path) -> None:
    # Two outputs: "zz_logits" (no softmax) sorts after "prob", so DIGITS would read it.
    net = NetBuilder("two", seed=1)
    data = net.input("data", (1, 1, 6, 6))
    ip = net.layer("InnerProduct", data, name="ip", inner_product_param={"num_output": 3}, blobs=[(3, 36), (3,)])
    net.layer("Softmax", ip, "prob", name="prob")
    net.layer(
        "InnerProduct",
        data,
        "zz_logits",
        name="zz_logits",
        inner_product_param={"num_output": 3},
        blobs=[(3, 36), (3,)],
    )
    files = net.write(tmp_path / "model", "deploy")
    with open_sources(prototxt=files.prototxt, weights=files.caffemodel) as sources:
        report = convert(sources, tmp_path / "m.onnx")
    assert report.outputs == ["prob", "zz_logits"]
    assert report.score_output == "zz_logits"
    model = Model.load(tmp_path / "m.onnx")
    assert not model.graph.score_is_softmax
    blob = np.random.default_rng(0).uniform(0, 255, (2, 1, 6, 6)).astype(np.float32)
    logits = model.run(blob)["zz_logits"].astype(np.float64)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(model.probabilities(blob), expected, rtol=1e-6)


def test_the_onnx_alone_is_enough(tmp_path: Path, image_file: tuple[Path, np.ndarray], capsys) -> None:
    folder = small_classifier(tmp_path / "model")
    write_train_val(folder, 'mean_file: "mean.binaryproto"')
    write_mean(folder, np.random.default_rng(2).integers(0, 256, (3, 8, 8)).astype(np.float32))
    write_labels(folder, 4)
    (folder / "info.json").write_text(json.dumps({"image resize mode": "crop", "framework": "caffe"}))
    archive = tmp_path / "model.tar.gz"
    import tarfile

    with tarfile.open(archive, "w:gz") as tar:
        for member in folder.iterdir():
            tar.add(member, arcname=member.name)
    output = tmp_path / "only.onnx"
    assert main(["convert", str(archive), "-o", str(output)]) == 0
    capsys.readouterr()
    for member in folder.iterdir():
        member.unlink()
    path, _ = image_file
    assert main([str(path), "--model", str(output), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["label"].startswith("class ")
    assert Model.load(output).spec.resize_mode == "crop"


def test_foreign_onnx_without_metadata_explains_what_is_missing(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(DecoderError, match="no decoder preprocessing metadata") as info:
        Model.load(path)
    assert str(path) in str(info.value)


def test_inspect_counts_lenet_multiply_adds(tmp_path: Path) -> None:
    from decoder.inspection import inspect_path

    net = NetBuilder("lenet", seed=0)
    x = net.input("data", (1, 1, 28, 28))
    x = net.layer(
        "Convolution",
        x,
        name="conv1",
        convolution_param={"num_output": 20, "kernel_size": [5]},
        blobs=[(20, 1, 5, 5), (20,)],
    )
    x = net.layer("Pooling", x, name="pool1", pooling_param={"pool": "MAX", "kernel_size": 2, "stride": 2})
    x = net.layer(
        "Convolution",
        x,
        name="conv2",
        convolution_param={"num_output": 50, "kernel_size": [5]},
        blobs=[(50, 20, 5, 5), (50,)],
    )
    x = net.layer("Pooling", x, name="pool2", pooling_param={"pool": "MAX", "kernel_size": 2, "stride": 2})
    x = net.layer("InnerProduct", x, name="ip1", inner_product_param={"num_output": 500}, blobs=[(500, 800), (500,)])
    x = net.layer("ReLU", x, x, name="relu1")
    x = net.layer("InnerProduct", x, name="ip2", inner_product_param={"num_output": 10}, blobs=[(10, 500), (10,)])
    files = net.write(tmp_path, "lenet")
    from_prototxt = inspect_path(str(files.prototxt))  # placeholder weights
    with open_sources(prototxt=files.prototxt, weights=files.caffemodel) as sources:
        convert(sources, tmp_path / "lenet.onnx")
    from_onnx = inspect_path(str(tmp_path / "lenet.onnx"))
    for result in (from_prototxt, from_onnx):
        # conv1 20*24*24*25 + conv2 50*8*8*500 + ip1 800*500 + ip2 500*10 = 2.293M (4.59 MFLOP)
        assert result.total_multiply_adds == 2_293_000
        assert result.total_parameters == 431_080
        shapes = {row.name: row.output_shapes[0] for row in result.rows}
        assert shapes["pool2"] == ("N", 50, 4, 4)


def test_a_net_whose_input_is_no_image_converts_and_runs_on_blobs(tmp_path: Path) -> None:
    net = NetBuilder("stack", seed=4)
    data = net.input("data", (1, 15, 6, 6))
    net.layer("InnerProduct", data, name="ip", inner_product_param={"num_output": 2}, blobs=[(2, 540), (2,)])
    files = net.write(tmp_path / "m", "deploy")
    with open_sources(prototxt=files.prototxt, weights=files.caffemodel) as sources:
        report = convert(sources, tmp_path / "m.onnx")
    assert report.spec is None
    assert any("15 channels" in note for note in report.notes)
    model = Model.load(tmp_path / "m.onnx")
    blob = np.ones((3, 15, 6, 6), np.float32)
    assert model.run(blob)["ip"].shape == (3, 2)
    with pytest.raises(DecoderError, match="no image preprocessing"):
        model.preprocess([np.zeros((6, 6), np.uint8)])
