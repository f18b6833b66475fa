"""`decode inspect`: the preprocessing block, symbolic dimensions as N, and a layer table for every model.

Models are built here: a small Caffe net converted with a mean file and labels, and an
ONNX classifier "from another exporter" (unnamed batch dimension, unnamed nodes) that is
given decoder metadata with `decode attach`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from decoder.cli.main import main
from decoder.conversion import convert
from decoder.inspection import format_inspection, inspect_path
from decoder.sources import open_sources
from decoder.spec import SPEC_KEY, PreprocessSpec
from tests.caffe_nets import NetBuilder, array_to_blob
from tests.shared_data import DIGITS_LENET, require


@pytest.fixture(scope="module")
def colour_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3x12x10 colour net (conv, pool, ip, softmax) with a mean image and 4 labels, converted."""
    folder = tmp_path_factory.mktemp("colour")
    net = NetBuilder("colour", seed=1)
    x = net.input("data", (1, 3, 12, 10))
    x = net.layer("Convolution", x, name="conv1", convolution_param={"num_output": 6, "kernel_size": [3]},
                  blobs=[(6, 3, 3, 3), (6,)])  # fmt: skip
    x = net.layer("Pooling", x, name="pool1", pooling_param={"pool": "MAX", "kernel_size": 2, "stride": 2})
    x = net.layer("InnerProduct", x, name="ip", inner_product_param={"num_output": 4}, blobs=[(4, 120), (4,)])
    net.layer("Softmax", x, name="prob")
    files = net.write(folder, "deploy")
    mean = np.stack([np.full((12, 10), v, np.float32) for v in (100, 110, 120)])
    (folder / "mean.binaryproto").write_bytes(array_to_blob(mean[None]).SerializeToString())
    (folder / "labels.txt").write_text("cat\ndog\nbird\nfish\n")
    output = folder / "colour.onnx"
    with open_sources(folder) as sources:
        convert(sources, output)
    assert files.caffemodel.is_file()
    return output


def settings(text: str) -> dict[str, str]:
    """The value of each line of the printed preprocessing block."""
    block = text.split("\n\n")[0].splitlines()[2:]
    return {line.split()[0]: line.split(None, 1)[1] for line in block if line.startswith("  ") and line[2] != " "}


def test_preprocessing_block_of_a_converted_model(colour_onnx: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(colour_onnx)]) == 0
    text = capsys.readouterr().out
    shown = settings(text)
    assert shown["input"] == "data: 3x12x10 (C x H x W)"
    assert shown["channels"].startswith("BGR")
    assert shown["resize"] == "squash to 10x12"
    assert shown["mean"] == "mean image 3x12x10 from mean.binaryproto subtracted (channel averages 100.0, 110.0, 120.0)"
    assert shown["scale"].startswith("1 ")
    assert shown["labels"] == "4: cat, dog, bird, fish"
    assert shown["scores"] == "output 'prob', already a softmax"
    assert shown["batch"] == "dynamic (any N)"
    table = text.split("\n\n")[1].splitlines()
    assert [line.split()[0] for line in table[2:-1]] == ["conv1", "pool1", "ip", "prob"]
    assert "Nx6x10x8" in table[2] and table[-1].startswith("input data Nx3x12x10; 4 layers")

    assert main(["inspect", str(colour_onnx), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    pre = body["preprocessing"]
    assert (pre["channels"], pre["height"], pre["width"], pre["channel_order"]) == (3, 12, 10, "BGR")
    assert pre["mean_kind"] == "image" and pre["mean_channel_averages"] == [100.0, 110.0, 120.0]
    assert pre["labels"] == ["cat", "dog", "bird", "fish"] and pre["labels_count"] == 4
    assert (pre["score_output"], pre["score_is_softmax"], pre["batch"]) == ("prob", True, "dynamic")
    assert body["inputs"] == {"data": ["N", 3, 12, 10]} and body["rows_are"] == "caffe layers"
    assert [row["name"] for row in body["layers"]] == ["conv1", "pool1", "ip", "prob"]


def test_each_setting_shows_where_it_came_from(colour_onnx: Path, tmp_path: Path) -> None:
    model = onnx.load(str(colour_onnx))
    props = {p.key: p.value for p in model.metadata_props}
    provenance = {
        "mean": "train_val.prototxt mean_file",
        "channel_order": "assumed: BGR (Caffe's convert_imageset order); change with --channel-order RGB",
    }
    spec = PreprocessSpec.from_metadata(props).with_changes(provenance=provenance)
    onnx.helper.set_model_props(model, props | spec.to_metadata())
    onnx.save(model, str(tmp_path / "m.onnx"))
    text = format_inspection(inspect_path(str(tmp_path / "m.onnx")))
    lines = text.splitlines()
    mean_line = next(i for i, line in enumerate(lines) if line.startswith("  mean "))
    assert lines[mean_line + 1].split() == ["from:", "train_val.prototxt", "mean_file"]
    order_line = next(i for i, line in enumerate(lines) if line.startswith("  channels "))
    assert lines[order_line + 1].strip() == (
        "ASSUMED: BGR (Caffe's convert_imageset order); change with --channel-order RGB"
    )
    assert "note: 1 setting(s) assumed, not stated by any file: channel_order" in lines
    scale_line = next(i for i, line in enumerate(lines) if line.startswith("  scale "))
    assert lines[scale_line + 1].startswith("  labels ")  # nothing recorded: no source line
    body = inspect_path(str(tmp_path / "m.onnx")).to_dict()
    assert body["preprocessing"]["provenance"] == provenance
    assert body["preprocessing"]["assumed"] == ["channel_order"]


def foreign_detector(path: Path, batch: int | None) -> None:
    """Conv -> Relu -> Flatten -> Gemm -> Softmax as another exporter writes it: no node names, unnamed batch."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["image", "K", "B"], ["c"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "W"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "foreign",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, 5])],
        [
            numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "K"),
            numpy_helper.from_array(np.zeros(4, np.float32), "B"),
            numpy_helper.from_array(rng.standard_normal((5, 144)).astype(np.float32), "W"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_attached_model_gets_a_table_and_symbolic_batch_as_n(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign_detector(tmp_path / "foreign.onnx", batch=None)
    raw = onnx.shape_inference.infer_shapes(onnx.load(str(tmp_path / "foreign.onnx")))
    assert any(d.dim_param.startswith("unk__") for v in raw.graph.value_info for d in v.type.tensor_type.shape.dim)
    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\ne\n")
    attach = ["attach", str(tmp_path / "foreign.onnx"), "-o", str(tmp_path / "ours.onnx")]
    assert main([*attach, "--mean-values", "1,2,3", "--labels", str(tmp_path / "labels.txt")]) == 0
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "ours.onnx")]) == 0
    text = capsys.readouterr().out
    assert "unk__" not in text
    shown = settings(text)
    assert shown["input"] == "image: 3x8x8 (C x H x W)"
    assert shown["mean"] == "mean pixel (1.0, 2.0, 3.0) subtracted"
    assert shown["labels"] == "5: a, b, c, d, e"
    assert shown["scores"] == "output 'probs', already a softmax" and shown["batch"] == "dynamic (any N)"
    result = inspect_path(str(tmp_path / "ours.onnx"))
    assert result.rows_are == "onnx nodes"
    assert [(row.name, row.type) for row in result.rows] == [
        ("c", "Conv"), ("r", "Relu"), ("f", "Flatten"), ("logits", "Gemm"), ("probs", "Softmax"),
    ]  # fmt: skip
    assert [row.output_shapes[0] for row in result.rows] == [("N", 4, 6, 6)] * 2 + [("N", 144), ("N", 5), ("N", 5)]
    assert result.total_parameters == 4 * 27 + 4 + 5 * 144
    assert result.total_multiply_adds == 4 * 36 * 27 + 5 * 144
    assert "5 ONNX nodes" in text.splitlines()[-1]


def test_plain_foreign_onnx_and_fixed_batch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign_detector(tmp_path / "fixed.onnx", batch=1)
    assert main(["inspect", str(tmp_path / "fixed.onnx")]) == 0
    text = capsys.readouterr().out
    assert "preprocessing: none stored: not written by `decode convert`; add it with `decode attach`" in text
    assert text.splitlines()[-1].startswith("input image 1x3x8x8; 5 ONNX nodes")
    assert main(["attach", str(tmp_path / "fixed.onnx"), "-o", str(tmp_path / "ours.onnx")]) == 0
    capsys.readouterr()
    result = inspect_path(str(tmp_path / "ours.onnx"))
    assert result.batch == 1
    assert dict((s.name, s.value) for s in result.settings)["batch"].startswith("fixed: 1")
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "ours.onnx")).metadata_props}
    assert SPEC_KEY in props


@pytest.mark.shared
def test_digits_archive_is_inspected_as_convert_writes_it() -> None:
    archive = require(DIGITS_LENET / "digits_model.tar.gz")
    result = inspect_path(str(archive))
    values = {s.name: s.value for s in result.settings}
    assert values["mean"].startswith("mean image 1x28x28 from mean.binaryproto")
    assert values["labels"] == "10: 0, 1, 2, 3, 4, ..."
    assert len(result.rows) == 9 and result.total_parameters == 431_080


def test_caffe_folder_whose_preprocessing_is_refused_still_gets_its_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = NetBuilder("refused", seed=3)
    x = net.input("data", (1, 3, 8, 8))
    net.layer("InnerProduct", x, name="ip", inner_product_param={"num_output": 3}, blobs=[(3, 192), (3,)])
    net.write(tmp_path, "deploy")
    (tmp_path / "train_val.prototxt").write_text(
        'layer { name: "data" type: "Data" top: "data" top: "label" '
        'transform_param { mean_file: "mean.binaryproto" } data_param { source: "db" batch_size: 4 } }\n'
    )  # names a mean file the folder does not hold: `decode convert` refuses
    assert main(["convert", str(tmp_path), "-o", str(tmp_path / "m.onnx")]) == 2
    capsys.readouterr()
    assert main(["inspect", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("preprocessing: not worked out: ") and "mean" in lines[1]
    assert lines[-1].startswith("input data Nx3x8x8; 1 layers, 579 parameters")
