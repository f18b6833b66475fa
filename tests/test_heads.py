"""Heads: ArgMax nets, models that are no classifier, and nets that would merge the images of a batch.

Each test builds its own Caffe files (seeded random weights) and checks what a user gets
against OpenCV 4's ``readNetFromCaffe`` of the same files fed the same blob (1e-4 relative):
labels read at ArgMax's input, a one-line refusal for a detector, `decode run`'s arrays per
image, and a batch that Caffe (and OpenCV) would merge kept per image.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decoder import DecoderError, Model
from decoder.cli.main import main
from decoder.conversion import convert
from decoder.sources import open_sources
from tests.caffe_nets import NetBuilder, NetFiles, assert_close, run_opencv
from tests.shared_data import MODELS, require

RTOL = 1e-4
SCALE = 1 / 255  # random weights on 0..255 pixels would saturate every softmax


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def write_images(folder: Path, count: int, size: int = 8, seed: int = 0) -> list[Path]:
    """RGB PNGs at the input size (no resize: the blob is the pixels, BGR, times SCALE)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = folder / f"image_{index}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def classifier_net(*, argmax: bool, on_logits: bool = False, classes: int = 6) -> NetBuilder:
    """Input layer, conv, ip, Softmax "prob" (unless ``on_logits``), then ArgMax top 5 when ``argmax``."""
    net = NetBuilder("argmax_head", seed=7)
    data = net.input("data", (1, 3, 8, 8), style="layer")
    conv = net.layer(
        "Convolution",
        data,
        name="conv1",
        convolution_param={"num_output": 4, "kernel_size": [3]},
        blobs=[(4, 3, 3, 3), (4,)],
    )
    ip = net.layer(
        "InnerProduct", conv, name="ip", inner_product_param={"num_output": classes}, blobs=[(classes, 144), (classes,)]
    )
    scores = ip if on_logits else net.layer("Softmax", ip, "prob", name="prob")
    if argmax:
        net.layer("ArgMax", scores, "argmax", name="argmax", argmax_param={"top_k": 5})
    return net


def opencv_scores(tmp_path: Path, blob: np.ndarray, *, on_logits: bool) -> np.ndarray:
    """OpenCV rejects ArgMax: the same net without it (same seed, same weights) gives the scores."""
    files = classifier_net(argmax=False, on_logits=on_logits).write(tmp_path / "reference")
    blob_name = "ip" if on_logits else "prob"
    return run_opencv(files, {"data": blob}, [blob_name])[blob_name]


@pytest.mark.parametrize("on_logits", [False, True], ids=["argmax-of-softmax", "argmax-of-logits"])
def test_a_net_ending_in_argmax_is_labelled_from_argmax_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], on_logits: bool
) -> None:
    files = classifier_net(argmax=True, on_logits=on_logits).write(tmp_path / "model", "deploy")
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class {i}\n" for i in range(6)))
    output = tmp_path / "m.onnx"
    argv = ["convert", "--prototxt", files.prototxt, "--weights", files.caffemodel, "--labels", labels]
    status, out, _ = run(capsys, *argv, "--scale", SCALE, "-o", output)
    assert status == 0, out  # 6 labels for 6 classes: no longer refused as "5 classes"
    scores_blob = "ip" if on_logits else "prob"
    assert re.search(rf"scores from: +'{scores_blob}' +\[the input of ArgMax layer 'argmax' \(ArgMax outputs", out)

    images = write_images(tmp_path / "images", 3)
    status, out, _ = run(capsys, *images, "--model", output, "--json", "--top-k", "6")
    assert status == 0
    rows = [json.loads(line) for line in out.splitlines()]
    model = Model.load(output)
    blob = model.preprocess(images)
    reference = opencv_scores(tmp_path, blob, on_logits=on_logits).astype(np.float64)
    if on_logits:  # the runtime softmaxes logits once
        reference = np.exp(reference - reference.max(1, keepdims=True))
        reference /= reference.sum(1, keepdims=True)
    for row, expected in zip(rows, reference, strict=True):
        assert row["label"] == f"class {int(np.argmax(expected))}"
        ours = np.array([entry["probability"] for entry in row["top_k"]])
        assert [entry["index"] for entry in row["top_k"]] == list(np.argsort(-expected, kind="stable"))
        assert_close(ours, np.sort(expected)[::-1], "top-k probabilities", rtol=RTOL)
    # the ArgMax indices are still there for whoever wants them, as Caffe computed them
    indices = model.run(blob)["argmax"]
    assert np.array_equal(indices[:, 0, 0], np.argmax(reference, axis=1).astype(np.float32))


def test_an_argmax_score_output_converted_by_an_older_version_is_refused(tmp_path: Path) -> None:
    """Files from before this check read ArgMax's indices as scores; now they are refused, not guessed."""
    import onnx

    files = classifier_net(argmax=True).write(tmp_path / "model", "deploy")
    with open_sources(prototxt=files.prototxt, weights=files.caffemodel) as sources:
        convert(sources, tmp_path / "m.onnx", overrides={"scale": SCALE})
    model = onnx.load(tmp_path / "m.onnx")
    props = {p.key: p.value for p in model.metadata_props}
    graph = json.loads(props["decoder.graph"])
    graph["score_output"] = "argmax"  # what the old converter recorded
    for key in ("kind", "kind_reason", "fixed_batch"):
        del graph[key]
    props["decoder.graph"] = json.dumps(graph)
    onnx.helper.set_model_props(model, props)
    onnx.save(model, tmp_path / "old.onnx")
    with pytest.raises(DecoderError, match=r"ArgMax output: class indices.*convert the Caffe model again"):
        Model.load(tmp_path / "old.onnx").predict(write_images(tmp_path / "images", 1))


def detector_net(first_dim: int = 1, declared_batch: int = 1) -> NetBuilder:
    """SSD-shaped: two conv heads, Permute to NHWC, Reshape to (first_dim, -1, width); Sigmoid scores."""
    net = NetBuilder("detector", seed=11)
    data = net.input("data", (declared_batch, 3, 8, 8))
    for name, width in (("cls", 2), ("loc", 4)):
        conv = net.layer(
            "Convolution",
            data,
            name=f"{name}_conv",
            convolution_param={"num_output": 3 * width, "kernel_size": [3], "pad": [1]},
            blobs=[(3 * width, 3, 3, 3), (3 * width,)],
        )
        permuted = net.layer("Permute", conv, name=f"{name}_permute", permute_param={"order": [0, 2, 3, 1]})
        net.layer("Reshape", permuted, name=f"{name}_reshape", reshape_param={"shape": {"dim": [first_dim, -1, width]}})
    net.layer("Sigmoid", "cls_reshape", "cls_prob", name="cls_prob")
    return net


def converted(tmp_path: Path, net: NetBuilder, capsys: pytest.CaptureFixture[str]) -> tuple[NetFiles, Path, str]:
    files = net.write(tmp_path / "model", "deploy")
    output = tmp_path / "detector.onnx"
    argv = ["convert", "--prototxt", files.prototxt, "--weights", files.caffemodel, "--scale", SCALE, "-o", output]
    status, out, err = run(capsys, *argv)
    assert status == 0, err
    return files, output, out


def per_image_opencv(files: NetFiles, blob: np.ndarray, outputs: list[str]) -> dict[str, np.ndarray]:
    """OpenCV (Caffe's rules) one image at a time: the per-image answer a batch must not change."""
    rows = [run_opencv(files, {"data": blob[i : i + 1]}, outputs) for i in range(len(blob))]
    return {name: np.concatenate([row[name] for row in rows]) for name in outputs}


def test_a_detector_is_refused_by_predict_and_run_gives_its_outputs_per_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files, model_path, summary = converted(tmp_path, detector_net(), capsys)
    assert "not a classifier: its score blob holds 192x4 values per image" in summary
    assert (
        "dynamic batch: layer 'cls_reshape' (Reshape) writes the batch as 1 (shape [1, -1, 2]): read as the batch axis"
        in summary
    )
    status, out, _ = run(capsys, "inspect", model_path)
    assert status == 0 and "scores    output 'loc_reshape', not a classifier (its score blob holds 192x4" in out
    images = write_images(tmp_path / "images", 3)

    status, out, err = run(capsys, images[0], "--model", model_path)
    assert status == 2 and out == ""
    assert err.count("\n") == 1
    assert "not a classifier" in err and "loc_reshape (Nx192x4), cls_prob (Nx192x2)" in err
    assert f"decode run IMAGES --model {model_path} -o outputs.npz" in err

    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    npz = tmp_path / "out.npz"
    status, _, err = run(capsys, "run", tmp_path / "images", "--model", model_path, "-o", npz)
    assert status == 2  # one broken image: listed, counted, the rest still written
    assert "broken.png" in err and "3 of 4 images run" in err and "1 could not be read" in err
    data = np.load(npz)
    assert sorted(data) == ["cls_prob", "images", "loc_reshape"]
    assert list(data["images"]) == [str(p) for p in images]
    blob = Model.load(model_path).preprocess(images)
    reference = per_image_opencv(files, blob, ["cls_prob", "loc_reshape"])
    for name in ("cls_prob", "loc_reshape"):
        assert data[name].shape == (3, 192, 4 if name == "loc_reshape" else 2)
        assert_close(data[name], reference[name], name, rtol=RTOL)
    # Caffe's own rule at batch 2 merges both images into one row; ours never does.
    merged = run_opencv(files, {"data": blob[:2]}, ["cls_prob"])["cls_prob"]
    assert merged.shape == (1, 384, 2)


def test_a_reshape_that_splits_each_image_keeps_the_declared_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """dim: 2 at a declared batch of 1 is not the batch axis: the net runs one image per call."""
    files, model_path, summary = converted(tmp_path, detector_net(first_dim=2), capsys)
    assert "fixed batch 1: layer 'cls_reshape' (Reshape) writes 2 on the batch axis (shape [2, -1, 2])" in summary
    assert "images are run 1 per call, never merged" in summary
    model = Model.load(model_path)
    assert model.graph.fixed_batch == 1
    images = write_images(tmp_path / "images", 3)
    status, _, err = run(capsys, "diagnose", "--model", model_path, *images)  # its layer runner too: 1 per call
    assert status == 0 and "internal error" not in err
    blob = model.preprocess(images)
    ours = model.run(blob)
    reference = per_image_opencv(files, blob, ["cls_prob", "loc_reshape"])
    for name, value in ours.items():
        assert value.shape[:2] == (3, 2)
        assert_close(value, reference[name].reshape(value.shape), name, rtol=RTOL)


def test_a_declared_batch_that_caffe_merges_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Batch 2 reshaped to one row: no output row belongs to one image, so nothing can be split."""
    files = detector_net(first_dim=1, declared_batch=2).write(tmp_path / "model", "deploy")
    output = tmp_path / "m.onnx"
    status, out, err = run(capsys, "convert", "--prototxt", files.prototxt, "--weights", files.caffemodel, "-o", output)
    assert status == 2 and out == "" and err.count("\n") == 1
    assert "must run 2 images per call" in err and "no row per image" in err
    assert not output.exists()


def test_a_one_value_head_is_no_classifier(tmp_path: Path) -> None:
    net = NetBuilder("regression", seed=2)
    data = net.input("data", (1, 3, 8, 8))
    net.layer("InnerProduct", data, name="age", inner_product_param={"num_output": 1}, blobs=[(1, 192), (1,)])
    files = net.write(tmp_path / "model", "deploy")
    with open_sources(prototxt=files.prototxt, weights=files.caffemodel) as sources:
        report = convert(sources, tmp_path / "m.onnx")
    assert report.kind == "other" and "single value per image" in report.kind_reason
    with pytest.raises(DecoderError, match=r"not a classifier.*age \(Nx1\)"):
        Model.load(tmp_path / "m.onnx").predict(np.zeros((8, 8, 3), np.uint8))


def test_accuracy_from_class_index_folders_when_the_model_has_no_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = classifier_net(argmax=False).write(tmp_path / "model", "deploy")
    output = tmp_path / "m.onnx"
    with open_sources(prototxt=files.prototxt, weights=files.caffemodel) as sources:
        convert(sources, output, overrides={"scale": SCALE})
    for index in range(4):
        write_images(tmp_path / "set" / str(index % 3), 1, seed=index).pop().rename(
            tmp_path / "set" / str(index % 3) / f"{index}.png"
        )
    status, out, err = run(capsys, tmp_path / "set", "--model", output, "--json")
    assert status == 0
    rows = [json.loads(line) for line in out.splitlines()]
    correct = sum(row["index"] == int(Path(row["image"]).parent.name) for row in rows)
    assert f"accuracy: {100 * correct / 4:.2f}% ({correct} of 4 images with a known class)" in err


# --------------------------------------------------------------------------- real models by other people


def test_the_face_mask_detector_is_refused_and_decode_run_equals_opencv_per_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """AIZOO's detector (SOURCE.txt: RGB, x/255, no mean): refused by predict, run per image."""
    folder = require(MODELS / "face_mask_aizoo")
    files = NetFiles(folder / "face_mask_detection.prototxt", folder / "face_mask_detection.caffemodel")
    output = tmp_path / "face_mask.onnx"
    argv = ["convert", "--prototxt", files.prototxt, "--weights", files.caffemodel, "--scale", SCALE, "-o", output]
    status, summary, _ = run(capsys, *argv)
    assert status == 0 and "not a classifier" in summary
    samples = sorted((folder / "samples").iterdir())
    status, out, err = run(capsys, samples[0], "--model", output)
    assert status == 2 and out == "" and err.count("\n") == 1
    assert "loc_branch_concat (Nx5972x4), cls_branch_concat (Nx5972x2)" in err
    npz = tmp_path / "outputs.npz"
    status, _, err = run(capsys, "run", *samples, "--model", output, "-o", npz)
    assert status == 0, err
    data = np.load(npz)
    blob = Model.load(output).preprocess(samples)
    names = ["loc_branch_concat", "cls_branch_concat"]
    reference = per_image_opencv(files, blob, names)
    for name in names:
        assert data[name].shape == (len(samples), 5972, 4 if name.startswith("loc") else 2)
        assert_close(data[name], reference[name], name, rtol=RTOL)


def test_mtcnn_pnet_is_a_classifier_at_12x12_and_its_probability_maps_are_not(tmp_path: Path) -> None:
    """P-Net declares 12x12, where prob1 is one face/no-face vector (N, 2, 1, 1); declared at
    24x24 (as MTCNN runs it over an image pyramid) prob1 is a (2, 7, 7) map per image."""
    folder = require(MODELS / "mtcnn_kpzhang")
    with open_sources(prototxt=folder / "det1.prototxt", weights=folder / "det1.caffemodel") as sources:
        report = convert(sources, tmp_path / "pnet12.onnx")
    assert (report.kind, report.score_output) == ("classifier", "prob1")
    text = (folder / "det1.prototxt").read_text().replace("input_dim: 12", "input_dim: 24")
    (tmp_path / "det1_24.prototxt").write_text(text)
    with open_sources(prototxt=tmp_path / "det1_24.prototxt", weights=folder / "det1.caffemodel") as sources:
        report = convert(sources, tmp_path / "pnet24.onnx")
    assert report.kind == "other" and "2x7x7 values per image" in report.kind_reason
    with pytest.raises(DecoderError, match=r"prob1 \(Nx2x7x7\)"):
        Model.load(tmp_path / "pnet24.onnx").predict(np.zeros((24, 24, 3), np.uint8))


def test_a_softmax_over_a_declared_batch_of_2_runs_two_images_per_call(tmp_path: Path) -> None:
    """Softmax over axis 0 ties the images of Caffe's batch of 2 together: every call gets 2
    images (the last one padded with a copy), and each call equals OpenCV on the same pair."""
    from decoder.caffe_io import load_net
    from decoder.converter import convert_net
    from tests.caffe_nets import assert_matches_opencv

    net = NetBuilder("batch_softmax", seed=5)
    data = net.input("data", (2, 3, 4, 4))
    ip = net.layer("InnerProduct", data, name="ip", inner_product_param={"num_output": 3}, blobs=[(3, 48), (3,)])
    net.layer("Softmax", ip, "prob", name="prob", softmax_param={"axis": 0})
    files = net.write(tmp_path / "model")
    graph = convert_net(load_net(files.prototxt, files.caffemodel))
    assert graph.fixed_batch == 2
    assert graph.batch_couplings == ["layer 'prob' (Softmax) normalises over the batch axis (axis 0)"]
    ours = assert_matches_opencv(files, tmp_path, inputs=[net.random_inputs(3, seed=1), net.random_inputs(4, seed=2)])
    assert ours["prob"].shape == (4, 3)


def test_a_v1_prediction_prototxt_ending_in_argmax_gives_the_right_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's old "prediction" prototxt: V1, IMAGE_DATA input, Accuracy and loss, ArgMax at the
    end. Labels come from the Softmax ArgMax reads (OpenCV, fed the same stated preprocessing)."""
    from tests.test_any_caffe_model import CLASSES, SIZE, V1_PREDICTION, classifier, image, write_mean

    deploy = classifier(seed=9).write(tmp_path / "reference", "deploy")  # OpenCV's net: same weights, no ArgMax
    folder = tmp_path / "v1"
    folder.mkdir()
    argmax = 'layers { name: "argmax" type: ARGMAX bottom: "prob" top: "argmax" argmax_param { top_k: 3 } }\n'
    (folder / "prediction.prototxt").write_text(V1_PREDICTION.format(size=SIZE, classes=CLASSES) + argmax)
    (folder / "weights.caffemodel").write_bytes(deploy.caffemodel.read_bytes())
    mean = np.random.default_rng(3).uniform(90, 140, (3, SIZE, SIZE)).astype(np.float32)
    write_mean(folder / "mean.binaryproto", mean)
    (folder / "labels.txt").write_text("".join(f"kind {i}\n" for i in range(CLASSES)))
    output = tmp_path / "v1.onnx"
    status, out, err = run(capsys, "convert", folder, "-o", output)
    assert status == 0, err
    assert re.search(r"scores from: +'prob' +\[the input of ArgMax layer 'argmax' \(ArgMax outputs", out)
    pictures = [tmp_path / f"{name}.png" for name in "pqr"]
    pixels = [image(path, 30 + i) for i, path in enumerate(pictures)]
    blob = np.stack([(p[:, :, ::-1].transpose(2, 0, 1) - mean) * 0.5 for p in pixels])  # BGR, float mean, scale
    reference = run_opencv(deploy, {"data": blob.astype(np.float32)}, ["prob"])["prob"]
    status, out, _ = run(capsys, *pictures, "--model", output, "--json", "--top-k", str(CLASSES))
    assert status == 0
    for line, expected in zip(out.splitlines(), reference, strict=True):
        row = json.loads(line)
        assert row["label"] == f"kind {int(np.argmax(expected))}"
        assert_close(np.array([e["probability"] for e in row["top_k"]]), np.sort(expected)[::-1], "top-k", rtol=RTOL)
