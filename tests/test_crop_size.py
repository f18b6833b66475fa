"""crop_size models: DIGITS resizes to the dataset size with PIL, then pycaffe squashes to the input.

Upstream (NVIDIA/DIGITS ``digits/tools/inference.py``, ``digits/model/tasks/caffe_train.py``,
BVLC/caffe ``python/caffe/io.py``): an image is first resized with PIL to the dataset's
H x W (info.json "image dimensions"), then ``Transformer.preprocess`` calls
``caffe.io.resize_image`` to reach the deploy input (crop_size x crop_size): float32,
normalised to [0, 1] by the image's own min/max, scikit-image ``resize(order=1)`` of the
DIGITS years (mode 'constant', cval 0, no anti-aliasing), scaled back. The mean image is
resized once, with PIL, from the dataset size to the input (``get_mean_image(resize=True)``);
the mean pixel is the plain average of the stored mean (``get_mean_pixel``).

The expected values below are worked out by hand, or by step-by-step code written here
(per-pixel loops), never by calling the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from decoder import DecoderError, Model
from decoder.caffe_proto import caffe_pb2
from decoder.conversion import convert
from decoder.preprocess import caffe_resize_image
from decoder.sources import open_sources
from decoder.spec import SPEC_KEY, PreprocessSpec
from tests.caffe_nets import NetBuilder

INPUT = 12  # deploy input side (the crop_size)
DATASET = 16  # dataset image side (info.json "image dimensions", the mean's size)

# --------------------------------------------------------------------------- hand-computed resizes


def test_ramp_4x4_to_3x3_is_the_ramp_at_the_sample_points() -> None:
    """Bilinear sampling of a linear image gives the linear function at the sample points.

    4 -> 3 puts output pixel k at source coordinate (4/3)(k + 0.5) - 0.5 = 1/6, 3/2, 17/6.
    The image is 10*row + col, so the result is 10*r + c at those points.
    """
    ramp = (10 * np.arange(4)[:, None] + np.arange(4)[None, :]).astype(np.uint8)
    at = np.array([1 / 6, 3 / 2, 17 / 6])
    out = caffe_resize_image(ramp, 3, 3)
    assert out.shape == (3, 3, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :, 0], 10 * at[:, None] + at[None, :], rtol=0, atol=2e-5)
    np.testing.assert_allclose(out[0, 0, 0], 11 / 6, rtol=0, atol=2e-6)


def test_three_channels_share_one_min_max_and_keep_their_own_ramps() -> None:
    ramp = 10 * np.arange(4)[:, None] + np.arange(4)[None, :]  # 0..33
    image = np.stack([ramp, 33 - ramp, np.full((4, 4), 50)], axis=2).astype(np.uint8)  # global range 0..50
    at = np.array([1 / 6, 3 / 2, 17 / 6])
    expected = 10 * at[:, None] + at[None, :]
    out = caffe_resize_image(image, 3, 3)
    np.testing.assert_allclose(out[:, :, 0], expected, rtol=0, atol=2e-5)
    np.testing.assert_allclose(out[:, :, 1], 33 - expected, rtol=0, atol=2e-5)
    assert np.all(out[:, :, 2] == 50.0)  # the channel at the global max stays exactly at it


def test_upscale_blends_in_im_min_at_the_border_not_black() -> None:
    """skimage's mode='constant' reads cval 0 outside the image: 0 of the [0, 1]-normalised image.

    [[50, 150], [150, 250]] normalises to [[0, .5], [.5, 1]]. 2 -> 4 samples at
    -0.25, 0.25, 0.75, 1.25, so the 1-D weights of (outside, a, b, outside) are
    (.25 a), (.75 a + .25 b), (.25 a + .75 b), (.75 b) with the outside term 0. Rows of the
    column pass: [0, .125, .375, .375] and [.375, .625, .875, .75]; the row pass combines
    them the same way; then x 200 + 50. PIL or an 'edge' mode would give 250 in the corner.
    """
    image = np.array([[50, 150], [150, 250]], np.uint8)
    expected = np.array(
        [
            [50.0, 68.75, 106.25, 106.25],
            [68.75, 100.0, 150.0, 143.75],
            [106.25, 150.0, 200.0, 181.25],
            [106.25, 143.75, 181.25, 162.5],
        ]
    )
    np.testing.assert_array_equal(caffe_resize_image(image, 4, 4)[:, :, 0], expected)
    # the same geometry at another offset and range: only the normalisation changes
    np.testing.assert_array_equal(caffe_resize_image((image - 50) // 2, 4, 4)[:, :, 0], (expected - 50) / 2)


def test_constant_images() -> None:
    # One grey level everywhere: pycaffe skips the resize and fills the constant.
    out = caffe_resize_image(np.full((5, 7, 3), 77, np.uint8), 3, 2)
    assert out.shape == (3, 2, 3) and out.dtype == np.float32 and np.all(out == 77.0)
    assert np.all(caffe_resize_image(np.zeros((4, 4), np.uint8), 9, 9) == 0.0)
    # A flat colour is not constant to pycaffe (min 10, max 30 over all channels): downscaled it
    # stays flat, upscaled its border is pulled toward the global minimum (10) in every channel.
    flat = np.zeros((9, 9, 3), np.uint8)
    flat[...] = (10, 20, 30)
    down = caffe_resize_image(flat, 4, 4)
    assert [np.unique(down[:, :, c]).tolist() for c in range(3)] == [[10.0], [20.0], [30.0]]
    up = caffe_resize_image(flat, 12, 12)
    assert np.all(up[3:-3, 3:-3] == down[:1, :1])  # the interior keeps its colour
    assert up[0, 0, 2] < 30.0 and np.all(up[:, :, 0] == 10.0)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(DecoderError, match="HxWx3"):
        caffe_resize_image(np.zeros((4, 4, 2), np.uint8), 2, 2)
    with pytest.raises(DecoderError, match="positive"):
        caffe_resize_image(np.zeros((4, 4), np.uint8), 0, 2)


# --------------------------------------------------------------------------- scikit-image itself


def test_matches_scikit_image_warp_bit_for_bit() -> None:
    """Compared against scikit-image 0.26.0, installed apart from the project (never a dependency).

    0.26's ``resize`` no longer warps (it calls ``ndimage.zoom``) and defaults to
    mode='reflect' with anti-aliasing; its ``warp`` with an affine matrix still runs the
    Cython ``_warp_fast`` bilinear code that 0.12-0.14's ``resize`` used, so pycaffe's
    resize of the DIGITS years is ``warp`` with the pixel-centre matrix, mode 'constant'.
    """
    pytest.importorskip("skimage", minversion="0.19", reason="scikit-image is not installed (test only)")
    from skimage.transform import resize, warp

    def pycaffe_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
        im = image.astype(np.float32)
        if im.ndim == 2:
            im = im[:, :, None]
        im_min, im_max = im.min(), im.max()
        im_std = (im - im_min) / (im_max - im_min)
        rows, cols = im.shape[:2]
        sr, sc = rows / height, cols / width
        matrix = np.array([[sc, 0, sc * 0.5 - 0.5], [0, sr, sr * 0.5 - 0.5], [0, 0, 1]])
        resized = warp(
            im_std.astype(np.float64), matrix, output_shape=(height, width), order=1, mode="constant", cval=0
        )
        return (resized * (im_max - im_min) + im_min).astype(np.float32)

    rng = np.random.default_rng(0)
    for (rows, cols), (height, width), channels in [
        ((256, 256), (227, 227), 3),
        ((64, 64), (56, 56), 1),
        ((5, 7), (9, 3), 3),
        ((2, 3), (6, 6), 1),
    ]:
        image = rng.integers(0, 256, (rows, cols, channels), dtype=np.uint8)
        ours = caffe_resize_image(image, height, width)
        np.testing.assert_array_equal(ours, pycaffe_resize(image, height, width))

    # Why the version matters: today's defaults (mode 'reflect', anti-aliasing since 0.15) are
    # not what DIGITS ran. They agree on the mild 256 -> 227 downscale (the anti-aliasing
    # kernel is then one tap wide; measured: within one float32 ulp), not when upscaling
    # (border mode) nor on strong downscales (the Gaussian blur).
    def modern(image: np.ndarray, height: int, width: int) -> np.ndarray:
        im = image.astype(np.float32)[:, :, None]
        im_min, im_max = im.min(), im.max()
        out = resize((im - im_min) / (im_max - im_min), (height, width), order=1)
        return (out * (im_max - im_min) + im_min).astype(np.float32)[:, :, 0]

    corners = np.array([[50, 150], [150, 250]], np.uint8)
    assert caffe_resize_image(corners, 4, 4)[3, 3, 0] == 162.5 and modern(corners, 4, 4)[3, 3] != 162.5
    grey = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    assert np.abs(modern(grey, 16, 16) - caffe_resize_image(grey, 16, 16)[:, :, 0]).max() > 10
    photo = rng.integers(0, 256, (256, 256), dtype=np.uint8)
    np.testing.assert_allclose(modern(photo, 227, 227), caffe_resize_image(photo, 227, 227)[:, :, 0], atol=3e-5)


# --------------------------------------------------------------------------- conversion + runtime


def digits_folder(
    folder: Path, channels: int, *, crop_size: int | None = INPUT, info: dict | None = None, mean: np.ndarray
) -> Path:
    """A DIGITS-style model: deploy input INPUT x INPUT, train_val with crop_size, mean, labels."""
    folder.mkdir()
    net = NetBuilder("cropnet", seed=7)
    data = net.input("data", (1, channels, INPUT, INPUT), style="input_dim")
    ip = net.layer(
        "InnerProduct", data, name="ip", inner_product_param={"num_output": 3}, blobs=[(3, channels * 144), (3,)]
    )
    net.layer("Softmax", ip, "prob", name="prob")
    files = net.write(folder, "deploy")
    files.caffemodel.rename(folder / "snapshot_iter_30.caffemodel")
    crop = f"crop_size: {crop_size} " if crop_size else ""
    (folder / "train_val.prototxt").write_text(
        'layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN } '
        f'transform_param {{ {crop}mean_file: "/jobs/ds/mean.binaryproto" }} }}\n'
    )
    blob = caffe_pb2.BlobProto(num=1, channels=mean.shape[0], height=mean.shape[1], width=mean.shape[2])
    blob.data.extend(mean.ravel().tolist())
    (folder / "mean.binaryproto").write_bytes(blob.SerializeToString())
    (folder / "labels.txt").write_text("cat\ndog\nfox\n")
    if info is not None:
        (folder / "info.json").write_text(json.dumps(info))
    return folder


def pil_resize(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))


def skimage_era_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """scikit-image 0.13's _warp_fast bilinear, one sample at a time (mode 'constant', cval 0)."""
    rows, cols, channels = image.shape
    sr, sc = rows / height, cols / width

    def pixel(r: int, c: int, k: int) -> float:
        return float(image[r, c, k]) if 0 <= r < rows and 0 <= c < cols else 0.0

    out = np.empty((height, width, channels))
    for y in range(height):
        for x in range(width):
            c, r = sc * x + (sc * 0.5 - 0.5), sr * y + (sr * 0.5 - 0.5)
            r0, c0, r1, c1 = int(np.floor(r)), int(np.floor(c)), int(np.ceil(r)), int(np.ceil(c))
            dr, dc = r - r0, c - c0
            for k in range(channels):
                top = (1 - dc) * pixel(r0, c0, k) + dc * pixel(r0, c1, k)
                bottom = (1 - dc) * pixel(r1, c0, k) + dc * pixel(r1, c1, k)
                out[y, x, k] = (1 - dr) * top + dr * bottom
    return np.clip(out, image.min(), image.max())


def digits_blob(rgb: np.ndarray, channels: int, mean: np.ndarray, first_stage: np.ndarray | None = None) -> np.ndarray:
    """DIGITS's blob, step by step: PIL to the dataset size, pycaffe's resize, CHW, BGR, minus mean."""
    pixels = np.asarray(Image.fromarray(rgb).convert("L" if channels == 1 else "RGB"))
    staged = pil_resize(pixels, DATASET, DATASET) if first_stage is None else first_stage
    im = staged.astype(np.float32).reshape(DATASET, DATASET, channels)
    lo, hi = im.min(), im.max()
    resized = skimage_era_resize((im - lo) / (hi - lo), INPUT, INPUT)
    net_in = (resized * (hi - lo) + lo).astype(np.float32).transpose(2, 0, 1)
    if channels == 3:
        net_in = net_in[::-1]
    return net_in - mean


@pytest.fixture
def photo() -> np.ndarray:
    """A smooth non-square RGB picture (20 x 30), so both resizes have something to do."""
    rows, cols = np.mgrid[0:20, 0:30]
    rgb = np.stack([rows * 12, cols * 8, 255 - rows * 5 - cols * 3], axis=2)
    return np.clip(rgb, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("channels", [1, 3])
def test_crop_size_model_converts_and_preprocesses_like_digits(
    tmp_path: Path, photo: np.ndarray, channels: int
) -> None:
    mean = np.random.default_rng(channels).integers(20, 230, (channels, DATASET, DATASET)).astype(np.float32)
    info = {"image dimensions": [DATASET, DATASET, channels], "image resize mode": "squash"}
    folder = digits_folder(tmp_path / "model", channels, info=info, mean=mean)
    with open_sources(folder) as sources:
        report = convert(sources, tmp_path / "m.onnx")
    spec = report.spec
    assert (spec.height, spec.width, spec.dataset_height, spec.dataset_width) == (INPUT, INPUT, DATASET, DATASET)
    assert any("crop_size 12" in note and "16x16 dataset size" in note for note in report.notes)

    # get_mean_image(resize=True): uint8, PIL bilinear from 16x16 straight to 12x12 (no crop).
    mean_hwc = mean.astype(np.uint8).transpose(1, 2, 0)
    expected_mean = pil_resize(mean_hwc[:, :, 0] if channels == 1 else mean_hwc, INPUT, INPUT)
    expected_mean = expected_mean.reshape(INPUT, INPUT, channels).transpose(2, 0, 1).astype(np.float32)
    np.testing.assert_array_equal(spec.mean, expected_mean)

    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    model = Model.load(tmp_path / "m.onnx")
    assert model.spec.dataset_size == (DATASET, DATASET)
    expected = digits_blob(photo, channels, expected_mean)
    np.testing.assert_array_equal(model.preprocess([path])[0], expected)
    np.testing.assert_array_equal(model.preprocess([photo])[0], expected)  # arrays take the same road

    # Through the batch pipeline (fast PNG reader, worker threads) the scores are those of this blob.
    paths = []
    for index in range(3):
        paths.append(tmp_path / f"copy{index}.png")
        Image.fromarray(np.roll(photo, 3 * index, axis=1)).save(paths[-1])
    blobs = np.stack([digits_blob(np.roll(photo, 3 * i, axis=1), channels, expected_mean) for i in range(3)])
    results = list(model.predict_batches(paths, batch_size=2, workers=2))
    scores = np.concatenate([r.probabilities for r in results])
    np.testing.assert_allclose(scores, model.probabilities(blobs), rtol=1e-6, atol=1e-7)
    assert model.predict(paths[0])[0].label in ("cat", "dog", "fox")


def test_first_stage_uses_the_dataset_resize_mode(tmp_path: Path, photo: np.ndarray) -> None:
    """crop mode: 20x30 -> short side to 16 (16 x round(30 / 1.25) = 16 x 24), keep columns 4..19."""
    mean = np.full((3, DATASET, DATASET), 100.0, np.float32)
    info = {"image dimensions": [DATASET, DATASET, 3], "image resize mode": "crop"}
    folder = digits_folder(tmp_path / "model", 3, info=info, mean=mean)
    with open_sources(folder) as sources:
        convert(sources, tmp_path / "m.onnx")
    first = pil_resize(photo, 16, 24)[:, 4:20]
    expected = digits_blob(photo, 3, np.full((3, INPUT, INPUT), 100.0, np.float32), first_stage=first)
    np.testing.assert_array_equal(Model.load(tmp_path / "m.onnx").preprocess([photo])[0], expected)


def test_dataset_size_from_the_mean_without_info_json(tmp_path: Path) -> None:
    mean = np.random.default_rng(1).integers(0, 256, (3, DATASET, DATASET)).astype(np.float32)
    folder = digits_folder(tmp_path / "model", 3, info=None, mean=mean)
    with open_sources(folder) as sources:
        report = convert(sources, tmp_path / "m.onnx")
    assert report.spec.dataset_size == (DATASET, DATASET)
    assert any("from the mean image" in note for note in report.notes)


def test_mean_pixel_is_the_plain_average_of_the_stored_mean(tmp_path: Path) -> None:
    """get_mean_pixel averages the full-size float mean: no uint8 truncation, no resize."""
    mean = np.random.default_rng(2).uniform(0, 255, (3, DATASET, DATASET)).astype(np.float32)
    mean[:, :4] = 250.75  # a corner the resize to 12x12 would weigh differently
    folder = digits_folder(tmp_path / "model", 3, info=None, mean=mean)
    with open_sources(folder) as sources:
        spec = convert(sources, tmp_path / "m.onnx", overrides={"mean_kind": "pixel"}).spec
    assert spec.mean_kind == "pixel"
    by_hand = [sum(float(v) for v in mean[c].ravel()) / mean[c].size for c in range(3)]
    np.testing.assert_allclose(spec.mean, by_hand, rtol=1e-7)


def test_models_without_crop_size_keep_one_resize(tmp_path: Path) -> None:
    # The DIGITS default: dataset size == input size, nothing to record.
    mean = np.full((3, INPUT, INPUT), 9.0, np.float32)
    folder = digits_folder(tmp_path / "a", 3, crop_size=None, info={"image dimensions": [12, 12, 3]}, mean=mean)
    with open_sources(folder) as sources:
        spec = convert(sources, tmp_path / "a.onnx").spec
    assert (spec.dataset_height, spec.dataset_width, spec.dataset_size) == (None, None, None)
    meta = {p.key: p.value for p in onnx.load(tmp_path / "a.onnx").metadata_props}
    assert "dataset_height" not in json.loads(meta[SPEC_KEY])  # the entry older versions wrote


def test_info_json_dimensions_are_checked(tmp_path: Path) -> None:
    mean = np.full((3, DATASET, DATASET), 9.0, np.float32)
    folder = digits_folder(tmp_path / "a", 3, info={"image dimensions": [16, 16]}, mean=mean)
    with open_sources(folder) as sources, pytest.raises(DecoderError, match="image dimensions"):
        convert(sources, tmp_path / "a.onnx")
    folder = digits_folder(tmp_path / "b", 3, info={"image dimensions": [16, 16, 1]}, mean=mean)
    with open_sources(folder) as sources, pytest.raises(DecoderError, match="1 channel"):
        convert(sources, tmp_path / "b.onnx")


# --------------------------------------------------------------------------- metadata


def test_old_metadata_without_dataset_size_still_loads(tmp_path: Path, photo: np.ndarray) -> None:
    """An .onnx written before the field existed: one PIL resize straight to the input, as then."""
    mean = np.full((3, DATASET, DATASET), 100.0, np.float32)
    folder = digits_folder(tmp_path / "model", 3, info={"image dimensions": [16, 16, 3]}, mean=mean)
    with open_sources(folder) as sources:
        convert(sources, tmp_path / "new.onnx")
    model = onnx.load(tmp_path / "new.onnx")
    props = {p.key: p.value for p in model.metadata_props}
    body = json.loads(props[SPEC_KEY])
    assert (body.pop("dataset_height"), body.pop("dataset_width")) == (16, 16)
    onnx.helper.set_model_props(model, {**props, SPEC_KEY: json.dumps(body, sort_keys=True)})
    onnx.save(model, tmp_path / "old.onnx")

    old = Model.load(tmp_path / "old.onnx")
    assert old.spec.dataset_size is None
    once = pil_resize(photo, INPUT, INPUT).astype(np.float32).transpose(2, 0, 1)[::-1] - 100.0
    np.testing.assert_array_equal(old.preprocess([photo])[0], once)


@pytest.mark.parametrize(
    "fields",
    [
        {"dataset_height": 10**9, "dataset_width": 16},
        {"dataset_height": 16},
        {"dataset_height": "16", "dataset_width": 16},
        {"dataset_height": True, "dataset_width": 16},
        {"dataset_height": 0, "dataset_width": 16},
    ],
)
def test_forged_dataset_size_is_corrupt_metadata(fields: dict) -> None:
    props = PreprocessSpec(channels=3, height=INPUT, width=INPUT).to_metadata()
    props[SPEC_KEY] = json.dumps({**json.loads(props[SPEC_KEY]), **fields})
    with pytest.raises(DecoderError, match="corrupt decoder metadata"):
        PreprocessSpec.from_metadata(props, "model.onnx")


def test_dataset_size_round_trips_and_equal_size_means_none() -> None:
    spec = PreprocessSpec(channels=1, height=INPUT, width=INPUT, dataset_height=DATASET, dataset_width=20)
    again = PreprocessSpec.from_metadata(spec.to_metadata())
    assert again == spec and again.dataset_size == (DATASET, 20)
    same = PreprocessSpec(channels=1, height=INPUT, width=INPUT, dataset_height=INPUT, dataset_width=INPUT)
    assert same.dataset_size is None
    image = np.arange(300, dtype=np.uint8).reshape(15, 20)
    from decoder.preprocess import preprocess

    np.testing.assert_array_equal(
        preprocess(image, same), preprocess(image, PreprocessSpec(channels=1, height=INPUT, width=INPUT))
    )
