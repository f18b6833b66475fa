"""Caffe models not trained with DIGITS: stated preprocessing, train/test and V1 prototxts, provenance.

Each test builds its own small net with seeded weights (tests/caffe_nets.py) in the shape
real third-party models come in, converts it with `decode convert` and checks the
predictions against OpenCV 4's ``readNetFromCaffe`` fed the same stated preprocessing, or
checks the one-line refusal.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from decoder import Model
from decoder.caffe_proto import caffe_pb2
from decoder.cli.main import main
from decoder.spec import PreprocessSpec
from tests.caffe_nets import NetBuilder, NetFiles, run_opencv
from tests.shared_data import DIGITS_LENET, mnist_test_set, require

SIZE = 8
CLASSES = 4


def classifier(channels: int = 3, seed: int = 5) -> NetBuilder:
    """conv1 -> ip1 -> Softmax "prob": the deploy net every test below disguises differently."""
    net = NetBuilder("plain", seed=seed)
    data = net.input("data", (1, channels, SIZE, SIZE))
    conv = net.layer(
        "Convolution", data, name="conv1", convolution_param={"num_output": 5, "kernel_size": [3]},
        blobs=[(5, channels, 3, 3), (5,)],
    )  # fmt: skip
    relu = net.layer("ReLU", conv, name="relu1")
    ip = net.layer(
        "InnerProduct", relu, name="ip1", inner_product_param={"num_output": CLASSES},
        blobs=[(CLASSES, 5 * (SIZE - 2) ** 2), (CLASSES,)],
    )  # fmt: skip
    net.layer("Softmax", ip, "prob", name="prob")
    return net


def image(path: Path, seed: int, channels: int = 3) -> np.ndarray:
    """A SIZE x SIZE image file (no resize needed), returned as loaded: RGB (H, W, 3) or grey (H, W)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3) if channels == 3 else (SIZE, SIZE))
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return pixels.astype(np.float32)


def opencv_probabilities(files: NetFiles, blob: np.ndarray) -> np.ndarray:
    return run_opencv(files, {"data": blob.astype(np.float32)}, ["prob"])["prob"]


def decode_probabilities(model_path: Path, images: list[Path]) -> np.ndarray:
    model = Model.load(model_path)
    return model.probabilities(model.preprocess(images))


def assert_relative(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    assert np.max(np.abs(ours - ref)) <= 1e-4 * np.max(np.abs(ref))


def spec_of(path: Path) -> PreprocessSpec:
    return PreprocessSpec.from_metadata({p.key: p.value for p in onnx.load(path).metadata_props})


def test_rgb_trained_net_gets_rgb_planes_its_mean_and_scale_as_opencv_fed_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = classifier().write(tmp_path / "rgb", "deploy")
    pictures = [tmp_path / "a.png", tmp_path / "b.png"]
    pixels = [image(p, seed) for seed, p in enumerate(pictures)]
    out = tmp_path / "rgb.onnx"
    args = ["convert", str(files.prototxt.parent), "-o", str(out)]
    assert main([*args, "--channel-order", "RGB", "--mean-values", "120,110,100", "--scale", "0.017"]) == 0
    printed = capsys.readouterr()
    assert "WARNING" not in printed.err and "option --channel-order" in printed.out
    # The same preprocessing stated by hand: RGB planes in file order, minus the mean pixel, times the scale.
    blob = np.stack([(p.transpose(2, 0, 1) - np.array([120, 110, 100.0])[:, None, None]) * 0.017 for p in pixels])
    assert_relative(decode_probabilities(out, pictures), opencv_probabilities(files, blob))
    spec = spec_of(out)
    assert spec.channel_order == "RGB" and spec.assumed() == {}
    assert spec.provenance["mean"] == "option --mean-values" and spec.provenance["scale"] == "option --scale"

    # Without the options every guess is a visible WARNING naming the option that changes it.
    assert main([*args[:3], str(tmp_path / "guess.onnx")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 3 and any("--channel-order RGB" in line for line in warnings)
    assert set(spec_of(tmp_path / "guess.onnx").assumed()) == {"channel_order", "mean", "scale"}


def test_mean_values_give_the_same_numbers_through_convert_and_attach(tmp_path: Path) -> None:
    files = classifier().write(tmp_path / "m", "deploy")
    mean = ["--mean-values", "104.25,116.75,122.5"]
    assert main(["convert", str(files.prototxt.parent), "-o", str(tmp_path / "c.onnx"), *mean]) == 0
    assert main(["convert", str(files.prototxt.parent), "-o", str(tmp_path / "bare.onnx"), "--mean-kind", "none"]) == 0
    assert main(["attach", str(tmp_path / "bare.onnx"), "-o", str(tmp_path / "a.onnx"), *mean]) == 0
    converted, attached = spec_of(tmp_path / "c.onnx"), spec_of(tmp_path / "a.onnx")
    assert converted.mean is not None and attached.mean is not None
    np.testing.assert_array_equal(converted.mean, np.array([104.25, 116.75, 122.5], np.float32))
    np.testing.assert_array_equal(attached.mean, converted.mean)
    assert attached == converted and attached.provenance["mean"] == converted.provenance["mean"]
    pictures = [tmp_path / "x.png"]
    bgr = image(pictures[0], 7)[:, :, ::-1].transpose(2, 0, 1) - np.array([104.25, 116.75, 122.5])[:, None, None]
    expected = opencv_probabilities(files, bgr[None])
    assert_relative(decode_probabilities(tmp_path / "c.onnx", pictures), expected)
    assert_relative(decode_probabilities(tmp_path / "a.onnx", pictures), expected)


V1_PREDICTION = """name: "old_v1"
layers {{ name: "data" type: IMAGE_DATA top: "data" top: "label"
  image_data_param {{ source: "/home/someone/val.txt" batch_size: 50 new_height: {size} new_width: {size} }}
  transform_param {{ mean_file: "/home/someone/caffe/mean.binaryproto" scale: 0.5 }} }}
layers {{ name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
  convolution_param {{ num_output: 5 kernel_size: 3 }} }}
layers {{ name: "relu1" type: RELU bottom: "conv1" top: "conv1" }}
layers {{ name: "ip1" type: INNER_PRODUCT bottom: "conv1" top: "ip1" inner_product_param {{ num_output: {classes} }} }}
layers {{ name: "prob" type: SOFTMAX bottom: "ip1" top: "prob" }}
layers {{ name: "accuracy" type: ACCURACY bottom: "prob" bottom: "label" top: "accuracy" }}
layers {{ name: "loss" type: SOFTMAX_LOSS bottom: "ip1" bottom: "label" top: "loss" }}
"""


def write_mean(path: Path, mean: np.ndarray) -> None:
    blob = caffe_pb2.BlobProto(num=1, channels=mean.shape[0], height=mean.shape[1], width=mean.shape[2])
    blob.data.extend(mean.ravel().tolist())
    path.write_bytes(blob.SerializeToString())


def test_v1_image_data_prediction_prototxt_converts_to_its_deploy_net_with_the_float_mean(tmp_path: Path) -> None:
    net = classifier(seed=9)
    deploy = net.write(tmp_path / "reference", "deploy")  # what OpenCV runs: the same weights, a deploy net
    folder = tmp_path / "v1"
    folder.mkdir()
    (folder / "prediction.prototxt").write_text(V1_PREDICTION.format(size=SIZE, classes=CLASSES))
    (folder / "weights.caffemodel").write_bytes(deploy.caffemodel.read_bytes())
    mean = np.random.default_rng(3).uniform(90, 140, (3, SIZE, SIZE)).astype(np.float32)  # not whole numbers
    write_mean(folder / "mean.binaryproto", mean)
    out = tmp_path / "v1.onnx"
    assert main(["convert", str(folder), "-o", str(out)]) == 0
    spec = spec_of(out)
    assert (spec.channels, spec.height, spec.width, spec.scale) == (3, SIZE, SIZE, 0.5)
    assert spec.mean is not None
    np.testing.assert_array_equal(spec.mean, mean)  # Caffe's DataTransformer: float, no uint8 round trip
    assert "new_height/new_width" in spec.provenance["input_shape"]
    assert "transform_param mean_file" in spec.provenance["mean"]
    assert "OpenCV: BGR" in spec.provenance["channel_order"] and spec.assumed() == {}
    pictures = [tmp_path / "p.png", tmp_path / "q.png"]
    blob = np.stack([(image(p, 20 + i)[:, :, ::-1].transpose(2, 0, 1) - mean) * 0.5 for i, p in enumerate(pictures)])
    assert_relative(decode_probabilities(out, pictures), opencv_probabilities(deploy, blob))


TRAIN_TEST = """name: "train_test"
layer {{ name: "mnist" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
  transform_param {{ scale: 0.5 crop_size: {train_crop} }} data_param {{ source: "train_lmdb" batch_size: 64 }} }}
layer {{ name: "mnist" type: "Data" top: "data" top: "label" include {{ phase: TEST }}
  transform_param {{ scale: 0.00390625 {test_crop} }} data_param {{ source: "test_lmdb" batch_size: 100 }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 5 kernel_size: 3 }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1" inner_product_param {{ num_output: {classes} }} }}
layer {{ name: "accuracy" type: "Accuracy" bottom: "ip1" bottom: "label" top: "accuracy" include {{ phase: TEST }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }}
layer {{ name: "silence" type: "Silence" bottom: "label" }}
"""


def test_train_test_prototxt_converts_with_the_test_phase_size_or_refuses_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy = classifier(channels=1, seed=11).write(tmp_path / "reference", "deploy")
    prototxt = tmp_path / "train_test.prototxt"
    weights = ["--weights", str(deploy.caffemodel)]
    prototxt.write_text(TRAIN_TEST.format(train_crop=SIZE + 2, test_crop="", classes=CLASSES))
    assert main(["convert", "--prototxt", str(prototxt), *weights, "-o", str(tmp_path / "no.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--input-shape C,H,W" in err and "train_test.prototxt" in err
    assert not (tmp_path / "no.onnx").exists()

    out = tmp_path / "tt.onnx"
    assert (
        main(["convert", "--prototxt", str(prototxt), *weights, "-o", str(out), "--input-shape", f"1,{SIZE},{SIZE}"])
        == 0
    )
    assert "accuracy, loss, silence" in capsys.readouterr().err
    spec = spec_of(out)
    assert spec.scale == 0.00390625 and spec.provenance["input_shape"] == "option --input-shape"  # TEST phase

    # The TEST data layer's crop_size states the size; the channels come from conv1's weights.
    prototxt.write_text(TRAIN_TEST.format(train_crop=SIZE + 2, test_crop=f"crop_size: {SIZE}", classes=CLASSES))
    assert main(["convert", "--prototxt", str(prototxt), *weights, "-o", str(out), "--verify"]) == 0
    assert "verify: ip1:" in capsys.readouterr().out  # OpenCV ran the deploy net this train/test net reduces to
    spec = spec_of(out)
    assert (spec.channels, spec.height, spec.width) == (1, SIZE, SIZE) and "crop_size" in spec.provenance["input_shape"]
    picture = tmp_path / "g.png"
    blob = image(picture, 4, channels=1)[None, None] * 0.00390625
    assert_relative(decode_probabilities(out, [picture]), opencv_probabilities(deploy, blob))


def test_slash_comments_in_a_gbk_prototxt_are_named_in_one_line_without_mojibake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = classifier().write(tmp_path / "gbk", "deploy")
    text = files.prototxt.read_text()
    files.prototxt.write_bytes(("# 分类网络\n" + text.replace("layer {", "// 卷积层\nlayer {", 1)).encode("gbk"))
    assert main(["convert", str(files.prototxt.parent), "-o", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "deploy.prototxt" in err
    line = 2 + text[: text.index("layer {")].count("\n")
    assert f"line {line}: '//' comments" in err and "'#'" in err
    # With '#' comments the same GBK file converts, and a real syntax error shows the Chinese text as written.
    files.prototxt.write_bytes(("# 分类网络\n" + text.replace("layer {", "# 卷积层\nlayer {", 1)).encode("gbk"))
    assert main(["convert", str(files.prototxt.parent), "-o", str(tmp_path / "x.onnx")]) == 0
    capsys.readouterr()
    files.prototxt.write_bytes(("名字 \n" + text).encode("gbk"))
    assert main(["convert", str(files.prototxt.parent), "-o", str(tmp_path / "y.onnx")]) == 2
    err = capsys.readouterr().err
    assert "line 1" in err and "名" in err and "Ã" not in err


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("label.txt", "cat\ndog\nbird\nfish\n", ("cat", "dog", "bird", "fish")),
        ("synset_words.txt", "n01440764 tench, Tinca tinca\nn01443537 goldfish\nn1 a\nn2 b\n", None),
        (
            "synset_words.txt",
            "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\nn01484850 great white shark\n"
            "n01491361 tiger shark, Galeocerdo cuvieri\n",
            (
                "tench, Tinca tinca",
                "goldfish, Carassius auratus",
                "great white shark",
                "tiger shark, Galeocerdo cuvieri",
            ),
        ),
        ("classes.txt", "0 zero\n1 one\n2 two\n3 three\n", ("zero", "one", "two", "three")),
    ],
)
def test_labels_are_found_under_the_usual_names_and_the_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str, expected: tuple[str, ...] | None
) -> None:
    files = classifier().write(tmp_path / "net", "deploy")
    (files.prototxt.parent / name).write_text(content)
    out = tmp_path / "l.onnx"
    assert main(["convert", str(files.prototxt.parent), "-o", str(out)]) == 0
    assert name in capsys.readouterr().out
    spec = spec_of(out)
    lines = tuple(line for line in content.splitlines())
    assert spec.labels == (expected or lines)  # a file that is not all synset lines is kept as written
    assert spec.provenance["labels"] == f"{name} (found beside the model)"


def test_attach_labels_keeps_the_digits_mean_and_the_accuracy(tmp_path: Path) -> None:
    archive = require(DIGITS_LENET / "digits_model.tar.gz")
    images, truth = mnist_test_set()
    images, truth = 255 - images[:500], truth[:500]  # the DIGITS LeNet was trained on dark digits on white
    converted, edited = tmp_path / "lenet.onnx", tmp_path / "lenet2.onnx"
    assert main(["convert", str(archive), "-o", str(converted)]) == 0
    (tmp_path / "labels.txt").write_text("".join(f"digit {i}\n" for i in range(10)))
    assert main(["attach", str(converted), "-o", str(edited), "--labels", str(tmp_path / "labels.txt")]) == 0
    before, after = spec_of(converted), spec_of(edited)
    assert before.mean is not None and after.mean is not None
    np.testing.assert_array_equal(after.mean, before.mean)
    assert after == before.with_changes(labels=tuple(f"digit {i}" for i in range(10)))
    assert after.provenance["mean"] == before.provenance["mean"]
    assert after.provenance["labels"] == "labels.txt (option --labels)"
    graph = {p.key: p.value for p in onnx.load(edited).metadata_props}["decoder.graph"]
    assert '"layers": [{' in graph  # the layer table survives
    accuracy = [
        np.mean(Model.load(path).probabilities(Model.load(path).preprocess(list(images))).argmax(1) == truth)
        for path in (converted, edited)
    ]
    assert accuracy[0] == accuracy[1] > 0.95


def test_attach_turns_guesses_into_statements_and_keeps_every_other_setting(tmp_path: Path) -> None:
    files = classifier().write(tmp_path / "g", "deploy")
    (files.prototxt.parent / "labels.txt").write_text("a\nb\nc\nd\n")
    guessed, stated = tmp_path / "guessed.onnx", tmp_path / "stated.onnx"
    assert main(["convert", str(files.prototxt.parent), "-o", str(guessed), "--scale", "1/255"]) == 0
    assert set(spec_of(guessed).assumed()) == {"channel_order", "mean"}
    assert main(["attach", str(guessed), "-o", str(stated), "--mean-kind", "none", "--channel-order", "RGB"]) == 0
    before, after = spec_of(guessed), spec_of(stated)
    assert after.assumed() == {} and after.channel_order == "RGB" and after.mean_kind == "none"
    assert after == before.with_changes(channel_order="RGB")  # scale 1/255 and the labels stay
    assert after.provenance["scale"] == "option --scale" and after.labels == ("a", "b", "c", "d")


def test_digits_train_val_converted_itself_scales_in_its_data_layer_like_the_deploy_net(tmp_path: Path) -> None:
    """DIGITS's deploy net scales in a Power layer; its train_val scales in transform_param: same answers."""
    folder = require(DIGITS_LENET)
    images, _ = mnist_test_set()
    images = list(255 - images[:300])
    deploy, train_val = tmp_path / "deploy.onnx", tmp_path / "train_val.onnx"
    assert main(["convert", str(folder), "-o", str(deploy)]) == 0
    args = ["--prototxt", "train_val.prototxt", "--input-shape", "1,28,28"]
    assert main(["convert", str(folder), *args, "-o", str(train_val)]) == 0
    assert spec_of(train_val).scale == 0.0125 and spec_of(deploy).scale == 1.0
    ours, reference = Model.load(train_val), Model.load(deploy)
    assert_relative(ours.probabilities(ours.preprocess(images)), reference.probabilities(reference.preprocess(images)))


def test_attach_score_output_moves_the_scores_and_keeps_the_rest(tmp_path: Path) -> None:
    net = classifier()
    net.layer("ReLU", "ip1", "features", name="features")  # a second output, beside "prob"
    files = net.write(tmp_path / "two", "deploy")
    first, second = tmp_path / "first.onnx", tmp_path / "second.onnx"
    assert main(["convert", str(files.prototxt.parent), "-o", str(first), "--score-output", "features"]) == 0
    assert spec_of(first).provenance["score_output"].startswith("option --score-output")
    assert main(["attach", str(first), "-o", str(second), "--score-output", "prob"]) == 0
    graph = json.loads({p.key: p.value for p in onnx.load(second).metadata_props}["decoder.graph"])
    assert graph["score_output"] == "prob" and graph["score_is_softmax"] and graph["layers"]
    assert spec_of(second) == spec_of(first) and spec_of(second).provenance["score_output"] == "option --score-output"
    pictures = [tmp_path / "s.png"]
    bgr = image(pictures[0], 12)[:, :, ::-1].transpose(2, 0, 1)[None]
    assert_relative(decode_probabilities(second, pictures), opencv_probabilities(files, bgr))


@pytest.mark.parametrize(
    ("data_layer", "shape", "source"),
    [
        (
            'type: "MemoryData" memory_data_param { batch_size: 4 channels: 3 height: 8 width: 8 }',
            (1, 3, 8, 8),
            "memory_data_param",
        ),
        (
            'type: "ImageData" image_data_param { new_height: 8 new_width: 8 is_color: false }',
            (1, 1, 8, 8),
            "new_height/new_width",
        ),
        ('type: "Data" transform_param { crop_size: 8 }', (1, 3, 8, 8), "crop_size (channels from the first conv"),
    ],
)
def test_the_data_layer_states_the_input_shape(
    tmp_path: Path, data_layer: str, shape: tuple[int, ...], source: str
) -> None:
    from decoder.caffe_io import load_net

    channels = shape[1]
    deploy = classifier(channels=channels).write(tmp_path / "ref", "deploy")
    body = deploy.prototxt.read_text()
    body = body[body.index("layer {") :]
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(f'layer {{ name: "d" top: "data" top: "label" {data_layer} }}\n{body}')
    net = load_net(prototxt, deploy.caffemodel)
    assert net.inputs[0].shape == shape and source in net.input_source and net.dropped == ["d"]


def test_commands_that_convert_on_the_fly_take_the_options_conversion_asks_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """compare, diagnose and inspect name `--input-shape` in the error on a train/test net: they must accept it."""
    deploy = classifier(channels=1, seed=11).write(tmp_path / "reference", "deploy")
    prototxt = tmp_path / "train_test.prototxt"
    prototxt.write_text(TRAIN_TEST.format(train_crop=SIZE + 2, test_crop="", classes=CLASSES))
    caffe = ["--prototxt", str(prototxt), "--weights", str(deploy.caffemodel)]
    shape = ["--input-shape", f"1,{SIZE},{SIZE}"]
    picture = tmp_path / "g.png"
    image(picture, 4, channels=1)

    for command in (["compare", *caffe], ["diagnose", str(picture), *caffe]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "give it with --input-shape C,H,W" in err

    # compare: the train/test net, converted with the option, against OpenCV's run of its deploy net
    assert main(["compare", *caffe, *shape, "--json"]) == 0
    compared = json.loads(capsys.readouterr().out)
    assert compared["passed"] and compared["layers"][-1]["name"] == "ip1" and compared["layers"][-1]["max_abs"] >= 0
    assert "deploy.prototxt" not in compared["reference"] and "train_test" in compared["reference"]

    # diagnose: the same options as convert, the scale of the TEST data layer stated, the mean given
    assert main(["diagnose", str(picture), *caffe, *shape, "--mean-kind", "none", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["stated"]["scale"].startswith("0.00390625 (train_test.prototxt") and report["inputs"]["count"] == 1

    # inspect: the table and the preprocessing conversion would write
    assert main(["inspect", str(prototxt), "--weights", str(deploy.caffemodel), *shape, "--json"]) == 0
    inspected = json.loads(capsys.readouterr().out)
    assert inspected["preprocessing"]["scale"] == 0.00390625, inspected["preprocessing"]
    assert inspected["inputs"] == {"data": ["N", 1, SIZE, SIZE]} and inspected["layers"][-1]["name"] == "ip1"

    # A .onnx carries its own settings: the options are refused, not ignored.
    out = tmp_path / "tt.onnx"
    assert main(["convert", *caffe, *shape, "-o", str(out)]) == 0
    capsys.readouterr()
    for command in (["compare", "--model", str(out)], ["inspect", str(out)]):
        assert main([*command, "--mean-kind", "none"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--mean-kind: options for converting Caffe files" in err
