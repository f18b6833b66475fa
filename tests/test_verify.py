"""`decode convert --verify`: the written .onnx checked against OpenCV 4's import of the same files."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from decoder.cli.main import main
from decoder.opencv_caffe import load_opencv_net
from decoder.verification import verify_conversion
from tests.caffe_nets import NetBuilder, NetFiles


def two_output_net(seed: int) -> NetBuilder:
    net = NetBuilder("verify", seed=seed)
    data = net.input("data", (1, 3, 9, 9))
    conv = net.layer(
        "Convolution",
        data,
        name="conv",
        convolution_param={"num_output": 4, "kernel_size": [3]},
        blobs=[(4, 3, 3, 3), (4,)],
    )
    pooled = net.layer("Pooling", conv, name="pool", pooling_param={"pool": "AVE", "kernel_size": 3, "stride": 2})
    net.layer("InnerProduct", pooled, name="scores", inner_product_param={"num_output": 5}, blobs=[(5, 36), (5,)])
    net.layer("ReLU", conv, "side", name="side")
    return net


def convert_argv(files: NetFiles, output: Path, *extra: str) -> list[str]:
    """`decode convert --prototxt P --weights W -o OUT [extra]`."""
    return ["convert", "--prototxt", str(files.prototxt), "--weights", str(files.caffemodel), "-o", str(output), *extra]


def test_verify_reports_every_output_and_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = two_output_net(0).write(tmp_path / "m", "deploy")
    output = tmp_path / "m.onnx"
    status = main(convert_argv(files, output, "--verify"))
    out = capsys.readouterr().out
    assert status == 0, out
    verified = [line for line in out.splitlines() if line.startswith("verify: ")]
    assert sorted(line.split(":")[1].strip() for line in verified) == ["scores", "side"]
    assert all(line.endswith(" ok") for line in verified)


def test_verify_fails_when_the_onnx_does_not_compute_what_caffe_does(tmp_path: Path) -> None:
    files = two_output_net(0).write(tmp_path / "m", "deploy")
    other = two_output_net(1).write(tmp_path / "other", "deploy")  # same net, other weights
    output = tmp_path / "m.onnx"
    assert main(convert_argv(files, output)) == 0
    checks = verify_conversion(output, other.prototxt, other.caffemodel)
    assert {c.name for c in checks} == {"scores", "side"}
    assert not any(c.passed for c in checks)
    assert all(c.relative > 1e-2 for c in checks)


def net_with_loss_layers() -> NetBuilder:
    """A deploy net that still carries its training tail: a label input, SoftmaxWithLoss, Accuracy."""
    net = NetBuilder("loss", seed=0)
    data = net.input("data", (1, 3, 9, 9))
    net.input("label", (1, 1, 1, 1))
    scores = net.layer("InnerProduct", data, name="ip", inner_product_param={"num_output": 5}, blobs=[(5, 243), (5,)])
    net.layer("Softmax", scores, name="prob")
    net.layer("SoftmaxWithLoss", [scores, "label"], name="loss")
    net.layer("Accuracy", [scores, "label"], name="accuracy")
    return net


def test_verify_feeds_opencv_the_net_without_its_training_layers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = net_with_loss_layers().write(tmp_path / "m", "deploy")
    with pytest.raises(cv2.error):  # OpenCV itself cannot run these files: the loss layer has no label
        net = cv2.dnn.readNetFromCaffe(str(files.prototxt), str(files.caffemodel))
        net.setInput(np.zeros((1, 3, 9, 9), np.float32), "data")
        net.forward("prob")
    status = main(convert_argv(files, tmp_path / "m.onnx", "--verify"))
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert [line.split(":")[1].strip() for line in captured.out.splitlines() if line.startswith("verify: ")] == ["prob"]
    loaded = load_opencv_net(files.prototxt, files.caffemodel)
    assert loaded.dropped == ("loss", "accuracy", "label") and loaded.inputs == ("data",)
    assert "deploy.prototxt without loss, accuracy, label" in loaded.description


def test_verify_names_opencvs_reason_when_it_refuses_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = NetBuilder("threshold", seed=0)
    scores = net.layer(
        "InnerProduct",
        net.input("data", (1, 3, 9, 9)),
        name="ip",
        inner_product_param={"num_output": 5},
        blobs=[(5, 243), (5,)],
    )
    net.layer("Threshold", scores, name="binary", threshold_param={"threshold": 0.1})  # we convert it, OpenCV does not
    files = net.write(tmp_path / "m", "deploy")
    output = tmp_path / "m.onnx"
    status = main(convert_argv(files, output, "--verify"))
    # The conversion's WARNING lines (guessed channel order, mean, scale) come first; verify says one line.
    err = "".join(line for line in capsys.readouterr().err.splitlines(True) if not line.startswith("WARNING: "))
    assert status == 1 and output.is_file()
    assert err.count("\n") == 1, err
    assert err.startswith(f"verify: not done: {files.prototxt}: OpenCV {cv2.__version__} refused")
    assert 'Can\'t create layer "binary" of type "Threshold"' in err
    assert "not installed" not in err and "pip install" not in err and ".cpp" not in err
    assert (
        main(["compare", "--model", str(output), "--prototxt", str(files.prototxt), "--weights", str(files.caffemodel)])
        == 2
    )
    err = capsys.readouterr().err
    assert 'of type "Threshold"' in err and "pip install" not in err


def test_verify_without_opencv_4_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = two_output_net(0).write(tmp_path / "m", "deploy")
    monkeypatch.delattr(cv2.dnn, "readNetFromCaffe")  # as in OpenCV 5
    output = tmp_path / "m.onnx"
    status = main(convert_argv(files, output, "--verify"))
    captured = capsys.readouterr()
    assert status == 1
    assert output.is_file()  # the conversion itself succeeded
    assert "OpenCV 4 is not installed" in captured.err and "readNetFromCaffe" in captured.err
    assert "pip install 'opencv-python-headless>=4.8,<5'" in captured.err


def test_verify_and_compare_when_cv2_cannot_be_imported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = two_output_net(0).write(tmp_path / "m", "deploy")
    output = tmp_path / "m.onnx"
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 -> ImportError
    assert main(convert_argv(files, output, "--verify")) == 1
    err = capsys.readouterr().err
    assert "verify: not done: OpenCV 4 is not installed (import cv2 failed" in err and "pip install" in err
    assert (
        main(["compare", "--model", str(output), "--prototxt", str(files.prototxt), "--weights", str(files.caffemodel)])
        == 2
    )
    assert "OpenCV 4 is not installed" in capsys.readouterr().err
