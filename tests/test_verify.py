"""`decode convert --verify`: the written .onnx checked against OpenCV 4's import of the same files."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from decoder.cli.main import main
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
    assert "readNetFromCaffe" in captured.err and "opencv-python-headless>=4.8,<5" in captured.err
