"""`decode attach`: an ONNX classifier made elsewhere gets decoder's metadata and predicts like ours."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from decoder import DecoderError, Model
from decoder.cli.main import main


def foreign_classifier(path: Path, softmax: bool) -> np.ndarray:
    """A 3x4x4 -> 3-class Gemm (+ Softmax) model as another exporter would write it; returns W."""
    weight = np.random.default_rng(0).standard_normal((3, 48)).astype(np.float32) / 50
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W"], ["logits"], transB=1),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
    graph = helper.make_graph(
        nodes,
        "foreign",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("probs" if softmax else "logits", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(weight, "W")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return weight


@pytest.mark.parametrize("softmax", [True, False])
def test_attached_model_predicts_with_the_given_preprocessing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], softmax: bool
) -> None:
    weight = foreign_classifier(tmp_path / "foreign.onnx", softmax)
    with pytest.raises(DecoderError, match="no decoder preprocessing metadata"):
        Model.load(tmp_path / "foreign.onnx")
    (tmp_path / "labels.txt").write_text("cat\ndog\nbird\n")
    status = main(
        [
            "attach",
            str(tmp_path / "foreign.onnx"),
            "-o",
            str(tmp_path / "ours.onnx"),
            "--mean-values",
            "10,20,30",
            "--labels",
            str(tmp_path / "labels.txt"),
            "--scale",
            "0.5",
        ]
    )
    assert status == 0
    pixels = np.random.default_rng(1).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    capsys.readouterr()
    assert main([str(tmp_path / "x.png"), "--model", str(tmp_path / "ours.onnx"), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    # By hand: BGR, minus the mean pixel, times the scale, then the Gemm and one softmax.
    blob = (pixels[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) - np.array([10, 20, 30]).reshape(3, 1, 1)) * 0.5
    logits = weight.astype(np.float64) @ blob.reshape(-1)
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert row["index"] == int(np.argmax(probabilities))
    assert row["label"] == ["cat", "dog", "bird"][row["index"]]
    assert row["probability"] == pytest.approx(float(probabilities.max()), rel=1e-5)


def test_attach_refuses_labels_that_do_not_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign_classifier(tmp_path / "foreign.onnx", softmax=True)
    (tmp_path / "labels.txt").write_text("a\nb\n")
    status = main(
        [
            "attach",
            str(tmp_path / "foreign.onnx"),
            "-o",
            str(tmp_path / "ours.onnx"),
            "--labels",
            str(tmp_path / "labels.txt"),
        ]
    )
    assert status == 2
    assert "2 labels for 3 classes" in capsys.readouterr().err
    assert not (tmp_path / "ours.onnx").exists()


def test_attach_stores_the_cost_the_runtime_plans_by(tmp_path: Path) -> None:
    from decoder.cost import COST_KEY, ModelCost, model_cost
    from decoder.wire import onnx_metadata

    weight = foreign_classifier(tmp_path / "foreign.onnx", softmax=True)
    assert main(["attach", str(tmp_path / "foreign.onnx"), "-o", str(tmp_path / "ours.onnx")]) == 0
    stored = ModelCost.from_metadata(onnx_metadata(tmp_path / "ours.onnx") or {})
    assert stored == model_cost(onnx.load(str(tmp_path / "foreign.onnx")))
    assert stored.multiply_adds == weight.size and stored.weight_bytes == 4 * weight.size
    assert Model.load(tmp_path / "ours.onnx").plan.cost == stored
    # the weights went back in after the cost was worked out without them
    attached = {t.name: t for t in onnx.load(str(tmp_path / "ours.onnx")).graph.initializer}
    np.testing.assert_array_equal(numpy_helper.to_array(attached["W"]), weight)

    # A file that has its cost keeps it (conversion worked it out from the Caffe net).
    model = onnx.load(str(tmp_path / "ours.onnx"))
    kept = ModelCost(multiply_adds=123, activation_bytes=456, weight_bytes=789)
    onnx.helper.set_model_props(model, {p.key: p.value for p in model.metadata_props} | kept.to_metadata())
    onnx.save(model, str(tmp_path / "costed.onnx"))
    assert main(["attach", str(tmp_path / "costed.onnx"), "-o", str(tmp_path / "again.onnx")]) == 0
    assert onnx_metadata(tmp_path / "again.onnx")[COST_KEY] == kept.to_metadata()[COST_KEY]
