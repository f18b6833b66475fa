"""decoder.preprocess against hand-computed pixels, against Pillow itself, and on a real DIGITS sample.

Every image is generated here (in tmp_path or in memory); expectations come from the
DIGITS source (digits/utils/image.py, digits/model/tasks/caffe_train.py) worked by hand,
or from Pillow called directly, never from decoder.preprocess itself.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import decoder.preprocess as pp
from decoder.errors import DecoderError
from decoder.preprocess import load_image, preprocess, preprocess_batch, resize_image, resize_mean
from decoder.spec import PreprocessSpec

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
DIGITS_LENET = SHARED / "models" / "digits_lenet_mnist_eagleeye"

BILINEAR = Image.Resampling.BILINEAR


def rng_image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save(image: Image.Image, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    image.save(path)
    return path


def pil_resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """What scipy.misc.imresize(array, (height, width), 'bilinear') does for uint8 input."""
    return np.asarray(Image.fromarray(array).resize((width, height), BILINEAR))


def luma(rgb: np.ndarray) -> np.ndarray:
    """Pillow's RGB -> L (ITU-R 601-2 in 16.16 fixed point, Convert.c L24), by hand."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def on_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Pillow's paste-with-mask blend onto 255: round((c * a + 255 * (255 - a)) / 255)."""
    c = color.astype(np.int64)
    a = alpha.astype(np.int64)
    if c.ndim == 3:
        a = a[..., np.newaxis]
    return np.floor((c * a + 255 * (255 - a)) / 255 + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------- load modes


def test_mode_L_passes_unchanged(tmp_path):
    pixels = rng_image((7, 9))
    path = save(Image.fromarray(pixels), tmp_path, "grey.png")
    assert np.array_equal(load_image(path, 1), pixels)
    assert np.array_equal(load_image(str(path), 1), pixels)


def test_mode_RGB_passes_and_greys_with_pil_luma(tmp_path):
    pixels = rng_image((6, 5, 3), seed=1)
    path = save(Image.fromarray(pixels), tmp_path, "colour.png")
    assert np.array_equal(load_image(path, 3), pixels)
    grey = load_image(path, 1)
    assert np.array_equal(grey, luma(pixels))
    assert np.array_equal(grey, np.asarray(Image.fromarray(pixels).convert("L")))


def test_pure_primaries_to_grey_by_hand():
    # 255*0.299 = 76.2, 255*0.587 = 149.7, 255*0.114 = 29.1 -> 76, 150, 29
    primaries = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    assert load_image(primaries, 1).tolist() == [[76, 150, 29, 255]]


def test_grey_to_three_channels_replicates(tmp_path):
    pixels = rng_image((4, 4), seed=2)
    path = save(Image.fromarray(pixels), tmp_path, "grey.png")
    for source in (path, pixels):
        rgb = load_image(source, 3)
        assert rgb.shape == (4, 4, 3)
        for c in range(3):
            assert np.array_equal(rgb[..., c], pixels)
    assert np.array_equal(load_image(pixels, 3), np.asarray(Image.fromarray(pixels).convert("RGB")))


def test_mode_1_becomes_0_or_255(tmp_path):
    bits = np.zeros((5, 8), dtype=bool)
    bits[::2, 1::3] = True
    path = save(Image.fromarray(bits), tmp_path, "bits.png")
    assert Image.open(path).mode == "1"
    assert np.array_equal(load_image(path, 1), np.where(bits, 255, 0).astype(np.uint8))


def test_mode_CMYK_to_rgb(tmp_path):
    cmyk = Image.new("CMYK", (3, 1))
    cmyk.putdata([(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255)])  # white, cyan, black
    path = save(cmyk, tmp_path, "cmyk.tif")
    assert Image.open(path).mode == "CMYK"
    rgb = load_image(path, 3)
    assert rgb.tolist() == [[[255, 255, 255], [0, 255, 255], [0, 0, 0]]]
    assert np.array_equal(rgb, np.asarray(cmyk.convert("RGB")))


def test_mode_YCbCr_to_rgb(tmp_path):
    ycc = Image.new("YCbCr", (3, 1))
    ycc.putdata([(0, 128, 128), (77, 128, 128), (255, 128, 128)])  # neutral chroma: grey levels
    path = save(ycc, tmp_path, "ycc.tif")
    assert Image.open(path).mode == "YCbCr"
    rgb = load_image(path, 3)
    assert rgb.tolist() == [[[0, 0, 0], [77, 77, 77], [255, 255, 255]]]
    assert np.array_equal(rgb, np.asarray(ycc.convert("RGB")))


def test_mode_RGBA_composited_on_white(tmp_path):
    color = rng_image((9, 11, 3), seed=3)
    alpha = rng_image((9, 11), seed=4)
    alpha[0, :3] = [0, 255, 128]
    color[0, 2] = [200, 100, 0]
    path = save(Image.fromarray(np.dstack([color, alpha])), tmp_path, "rgba.png")
    rgb = load_image(path, 3)
    assert rgb[0, 0].tolist() == [255, 255, 255]  # fully transparent -> white, not black
    assert rgb[0, 1].tolist() == color[0, 1].tolist()  # opaque -> unchanged
    # (200*128 + 255*127)/255 = 227.4, (100*128 + 32385)/255 = 177.2, 32385/255 = 127.0
    assert rgb[0, 2].tolist() == [227, 177, 127]
    assert np.array_equal(rgb, on_white(color, alpha))
    assert np.array_equal(load_image(path, 1), luma(on_white(color, alpha)))


def test_mode_LA_composited_on_white(tmp_path):
    grey = rng_image((5, 6), seed=5)
    alpha = rng_image((5, 6), seed=6)
    alpha[0, 0], alpha[0, 1] = 0, 255
    image = Image.merge("LA", [Image.fromarray(grey), Image.fromarray(alpha)])
    path = save(image, tmp_path, "la.png")
    assert Image.open(path).mode == "LA"
    out = load_image(path, 1)
    assert out[0, 0] == 255 and out[0, 1] == grey[0, 1]
    assert np.array_equal(out, on_white(grey, alpha))


def _palette_image(indices: np.ndarray, palette: np.ndarray) -> Image.Image:
    image = Image.frombytes("P", (indices.shape[1], indices.shape[0]), indices.tobytes())
    image.putpalette(palette.reshape(-1).tolist())
    return image


def test_mode_P_without_transparency_is_palette_lookup(tmp_path):
    palette = rng_image((256, 3), seed=7)
    indices = rng_image((6, 7), seed=8)
    path = save(_palette_image(indices, palette), tmp_path, "pal.png")
    assert Image.open(path).mode == "P"
    assert np.array_equal(load_image(path, 3), palette[indices])


def test_mode_P_with_transparent_index_becomes_white(tmp_path):
    palette = rng_image((256, 3), seed=9)
    indices = rng_image((6, 7), seed=10)
    indices[0, 0] = indices[2, 3] = 17
    image = _palette_image(indices, palette)
    path = tmp_path / "trns.png"
    image.save(path, transparency=17)
    assert Image.open(path).mode == "P" and Image.open(path).info["transparency"] == 17
    expected = palette[indices].copy()
    expected[indices == 17] = 255
    assert np.array_equal(load_image(path, 3), expected)


def test_mode_P_with_per_entry_alpha(tmp_path):
    palette = rng_image((256, 3), seed=11)
    alphas = rng_image((256,), seed=12)
    indices = rng_image((5, 5), seed=13)
    path = tmp_path / "palpha.png"
    _palette_image(indices, palette).save(path, transparency=alphas.tobytes())
    assert Image.open(path).mode == "P"
    assert np.array_equal(load_image(path, 3), on_white(palette[indices], alphas[indices]))


@pytest.mark.parametrize("mode", ["I;16", "F", "I"])
def test_wide_modes_refused_like_digits(tmp_path, mode):
    if mode == "I;16":
        image, name = Image.fromarray(np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000), "deep.png"
    else:
        image, name = Image.new(mode, (4, 3), 7), f"deep_{mode}.tif"
    path = save(image, tmp_path, name)
    assert Image.open(path).mode == mode
    with pytest.raises(DecoderError) as info:
        load_image(path, 1)
    message = str(info.value)
    assert str(path) in message and repr(mode) in message
    assert "refused by DIGITS" in message and "8 bits" in message
    assert "\n" not in message


def test_other_unsupported_mode_refused():
    with pytest.raises(DecoderError, match="refused by DIGITS"):
        load_image(Image.new("HSV", (2, 2)), 3)


def test_no_exif_rotation(tmp_path):
    pixels = np.zeros((4, 8), dtype=np.uint8)
    pixels[0, 0] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"; DIGITS ignores it, so must we
    path = tmp_path / "rotated.png"
    Image.fromarray(pixels).save(path, exif=exif)
    assert Image.open(path).getexif()[0x0112] == 6
    assert np.array_equal(load_image(path, 1), pixels)


def test_pil_image_input_is_handled_like_a_file(tmp_path):
    rgba = np.dstack([rng_image((4, 4, 3), seed=14), rng_image((4, 4), seed=15)])
    path = save(Image.fromarray(rgba), tmp_path, "x.png")
    with Image.open(path) as lazy:
        assert np.array_equal(load_image(lazy, 3), load_image(path, 3))


# ----------------------------------------------------------------------------- numpy inputs


def test_numpy_inputs_match_the_pil_images(tmp_path):
    grey = rng_image((5, 6), seed=16)
    rgb = rng_image((5, 6, 3), seed=17)
    rgba = np.dstack([rgb, rng_image((5, 6), seed=18)])
    assert load_image(grey, 1) is grey  # no copy when nothing changes
    assert np.array_equal(load_image(grey[:, :, np.newaxis], 1), grey)
    assert load_image(rgb, 3) is rgb
    assert np.array_equal(load_image(rgb, 1), luma(rgb))
    assert np.array_equal(load_image(rgba, 3), on_white(rgb, rgba[..., 3]))
    assert np.array_equal(load_image(rgba, 1), load_image(save(Image.fromarray(rgba), tmp_path, "a.png"), 1))


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((4, 4), dtype=np.float32),
        np.zeros((4, 4), dtype=np.uint16),
        np.zeros((4, 4, 2), dtype=np.uint8),
        np.zeros((4,), dtype=np.uint8),
        np.zeros((0, 4), dtype=np.uint8),
    ],
)
def test_bad_arrays_refused(array):
    with pytest.raises(DecoderError):
        load_image(array, 1)


def test_bad_channels_and_source_types():
    with pytest.raises(DecoderError):
        load_image(np.zeros((2, 2), np.uint8), 4)
    with pytest.raises(DecoderError, match="int"):
        load_image(42, 1)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- bad files


def _assert_names_file(exc: pytest.ExceptionInfo[DecoderError], path: Path) -> None:
    assert str(path) in str(exc.value)
    assert exc.value.path == str(path)
    assert "\n" not in str(exc.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(DecoderError, match="no such") as info:
        load_image(path, 1)
    _assert_names_file(info, path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(DecoderError, match="empty") as info:
        load_image(path, 1)
    _assert_names_file(info, path)


def test_truncated_png(tmp_path):
    whole = save(Image.fromarray(rng_image((40, 40, 3), seed=19)), tmp_path, "whole.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DecoderError, match="truncated") as info:
        load_image(path, 3)
    _assert_names_file(info, path)


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(DecoderError, match="not an image") as info:
        load_image(path, 1)
    _assert_names_file(info, path)


def test_directory(tmp_path):
    path = tmp_path / "folder.png"
    path.mkdir()
    with pytest.raises(DecoderError, match="directory") as info:
        load_image(path, 1)
    _assert_names_file(info, path)


def test_bad_file_in_a_batch_is_named(tmp_path):
    good = save(Image.fromarray(rng_image((28, 28))), tmp_path, "good.png")
    bad = tmp_path / "bad.png"
    bad.write_text("x")
    with pytest.raises(DecoderError) as info:
        preprocess_batch([good, bad], PreprocessSpec(channels=1, height=28, width=28))
    _assert_names_file(info, bad)


# ----------------------------------------------------------------------------- pixel limit


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose IHDR claims width x height but holds no pixel data at all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def test_pixel_limit_checked_before_decoding(tmp_path):
    # 10000 x 10000 = 1e8 > 89,478,485: refused from the header (decoding would fail differently)
    path = tmp_path / "bomb.png"
    _png_header_only(path, 10_000, 10_000)
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(DecoderError, match="exceeds the limit") as info:
        load_image(path, 1)
    _assert_names_file(info, path)


def test_huge_header_refused(tmp_path):
    path = tmp_path / "huge.png"
    _png_header_only(path, 100_000, 100_000)
    with pytest.raises(DecoderError) as info:
        load_image(path, 1)
    _assert_names_file(info, path)


def test_pixel_limit_is_the_module_constant(tmp_path, monkeypatch):
    assert pp.MAX_IMAGE_PIXELS == 89_478_485 == Image.MAX_IMAGE_PIXELS
    monkeypatch.setattr(pp, "MAX_IMAGE_PIXELS", 100)
    small = save(Image.fromarray(rng_image((10, 10))), tmp_path, "ok.png")
    big = save(Image.fromarray(rng_image((10, 11))), tmp_path, "big.png")
    assert load_image(small, 1).shape == (10, 10)
    with pytest.raises(DecoderError, match="110 pixels exceeds the limit of 100") as info:
        load_image(big, 1)
    _assert_names_file(info, big)


# ----------------------------------------------------------------------------- resize


def test_py2_round_halves_away_from_zero():
    r = pp._py2_round
    assert [r(0.5), r(1.5), r(2.5), r(6.5), r(7.5)] == [1, 2, 3, 7, 8]
    assert [r(0.49999999999999994), r(2.4999999999999996), r(3.0), r(3.7)] == [0, 2, 3, 4]
    assert r(-2.5) == -3


@pytest.mark.parametrize("mode", ["squash", "crop", "fill", "half_crop"])
def test_same_size_is_not_resampled(mode):
    for image in (rng_image((28, 28)), rng_image((20, 30, 3))):
        out = resize_image(image, image.shape[0], image.shape[1], mode)
        assert out is image


def test_same_size_file_blob_is_bit_identical(tmp_path):
    pixels = rng_image((28, 28), seed=20)
    path = save(Image.fromarray(pixels), tmp_path, "digit.png")
    blob = preprocess(path, PreprocessSpec(channels=1, height=28, width=28, resize_mode="squash"))
    assert np.array_equal(blob[0], pixels.astype(np.float32))


@pytest.mark.parametrize("shape", [(50, 40), (50, 40, 3), (9, 13), (9, 13, 3), (28, 28, 3)])
@pytest.mark.parametrize("target", [(28, 28), (100, 70), (17, 60)])
def test_squash_equals_pil_bilinear(shape, target):
    image = rng_image(shape, seed=21)
    if shape[:2] == target:
        return
    assert np.array_equal(resize_image(image, *target, "squash"), pil_resize(image, *target))


def test_downscale_antialiases():
    # A one-pixel checkerboard brought down 10x: Pillow's bilinear averages the whole
    # footprint (about 127 everywhere); a 2-tap bilinear (OpenCV INTER_LINEAR) would not.
    board = ((np.indices((100, 100)).sum(axis=0) % 2) * 255).astype(np.uint8)
    small = resize_image(board, 10, 10, "squash")
    assert np.all(np.abs(small.astype(int) - 127) <= 2)


def test_equal_ratios_squash_in_every_mode():
    image = rng_image((40, 60, 3), seed=22)
    for mode in ("crop", "fill", "half_crop"):
        assert np.array_equal(resize_image(image, 20, 30, mode), pil_resize(image, 20, 30))


def test_crop_start_rounds_half_up_wide():
    # 10 x 23 -> 10 x 10: height ratio 1, so no resample; the window starts at
    # round((23 - 10) / 2) = round(6.5) = 7 in Python 2 (Python 3's round would give 6).
    image = np.tile(np.arange(23, dtype=np.uint8) * 10, (10, 1))
    out = resize_image(image, 10, 10, "crop")
    assert out.shape == (10, 10)
    assert out[0].tolist() == [70, 80, 90, 100, 110, 120, 130, 140, 150, 160]


def test_crop_start_rounds_half_up_tall():
    image = np.repeat(np.arange(23, dtype=np.uint8)[:, np.newaxis] * 10, 10, axis=1)
    image = np.dstack([image, image // 2, 255 - image])
    out = resize_image(image, 10, 10, "crop")
    assert out.shape == (10, 10, 3)
    assert out[:, 0, 0].tolist() == [70, 80, 90, 100, 110, 120, 130, 140, 150, 160]


def test_crop_with_resample():
    # 20 x 46 -> 10 x 10: ratios 4.6 (w) > 2.0 (h): resize to 10 x round(46/2) = 10 x 23,
    # then columns 7..16 (round(6.5) = 7).
    image = rng_image((20, 46, 3), seed=23)
    assert np.array_equal(resize_image(image, 10, 10, "crop"), pil_resize(image, 10, 23)[:, 7:17])
    tall = rng_image((46, 20), seed=24)
    assert np.array_equal(resize_image(tall, 10, 10, "crop"), pil_resize(tall, 23, 10)[7:17, :])


def test_fill_pads_with_the_same_noise_on_both_sides():
    # 10 x 40 -> 28 x 28: width ratio 40/28 wins; height round(10 / (40/28)) = 7, and
    # 28 - 7 = 21 is odd so it becomes 8; 10 noise rows above and the same 10 below.
    image = rng_image((10, 40, 3), seed=25)
    out = resize_image(image, 28, 28, "fill", np.random.default_rng(3))
    assert out.shape == (28, 28, 3) and out.dtype == np.uint8
    assert np.array_equal(out[10:18], pil_resize(image, 8, 28))
    assert np.array_equal(out[:10], out[18:])
    # tall: the same with rows and columns exchanged, one channel
    tall = rng_image((40, 10), seed=26)
    out = resize_image(tall, 28, 28, "fill", np.random.default_rng(3))
    assert out.shape == (28, 28)
    assert np.array_equal(out[:, 10:18], pil_resize(tall, 28, 8))
    assert np.array_equal(out[:, :10], out[:, 18:])


def test_noise_is_0_to_254():
    out = resize_image(rng_image((2, 200)), 200, 200, "fill", np.random.default_rng(0))
    noise = out[:99]
    assert noise.max() == 254 and noise.min() == 0


def test_half_crop_cuts_and_pads():
    # 20 x 40 -> 10 x 10: ratios 4 (w), 2 (h), mean 3: resize to round(40/3) = 13 wide,
    # round(20/3) = 7 high -> 8 (10 - 7 is odd); cut columns from round(1.5) = 2; pad 1 row.
    image = rng_image((20, 40, 3), seed=27)
    out = resize_image(image, 10, 10, "half_crop", np.random.default_rng(5))
    assert out.shape == (10, 10, 3)
    assert np.array_equal(out[1:9], pil_resize(image, 8, 13)[:, 2:12])
    assert np.array_equal(out[0], out[9])
    # 30 x 12 -> 10 x 10: ratios 1.2 (w), 3 (h), mean 2.1: 6 wide (10 - 6 even), 14 high;
    # cut rows from round(2.0) = 2, pad 2 columns each side.
    tall = rng_image((30, 12), seed=28)
    out = resize_image(tall, 10, 10, "half_crop", np.random.default_rng(5))
    assert np.array_equal(out[:, 2:8], pil_resize(tall, 14, 6)[2:12, :])
    assert np.array_equal(out[:, :2], out[:, 8:])


@pytest.mark.parametrize("mode", ["fill", "half_crop"])
def test_noise_is_deterministic_per_seed(mode):
    image = rng_image((10, 40, 3), seed=29)
    first = resize_image(image, 28, 28, mode, np.random.default_rng(7))
    again = resize_image(image, 28, 28, mode, np.random.default_rng(7))
    other = resize_image(image, 28, 28, mode, np.random.default_rng(8))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.array_equal(resize_image(image, 28, 28, mode), resize_image(image, 28, 28, mode))
    spec = PreprocessSpec(channels=3, height=28, width=28, resize_mode=mode, seed=7)
    assert np.array_equal(preprocess(image, spec), preprocess(image, spec))
    assert np.array_equal(preprocess(image, spec), preprocess_batch([image, image], spec)[1])


def test_too_thin_to_fill_is_an_error():
    with pytest.raises(DecoderError, match="too thin"):
        resize_image(rng_image((1, 300)), 28, 28, "fill")


def test_resize_argument_checks():
    with pytest.raises(DecoderError, match="unknown resize mode"):
        resize_image(rng_image((4, 4)), 2, 2, "stretch")
    with pytest.raises(DecoderError):
        resize_image(rng_image((4, 4)), 0, 2, "squash")
    with pytest.raises(DecoderError):
        resize_image(np.zeros((4, 4), np.float32), 2, 2, "squash")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 60),
    st.integers(1, 60),
    st.integers(1, 40),
    st.integers(1, 40),
    st.sampled_from([1, 3]),
    st.sampled_from(["squash", "crop", "fill", "half_crop"]),
)
def test_blob_shape_always_chw(in_h, in_w, h, w, channels, mode):
    image = rng_image((in_h, in_w) if channels == 1 else (in_h, in_w, 3), seed=in_h * 61 + in_w)
    spec = PreprocessSpec(channels=channels, height=h, width=w, resize_mode=mode)
    try:
        blob = preprocess(image, spec)
    except DecoderError as exc:  # only a fill/half_crop of a sliver can shrink a side to 0
        assert mode in ("fill", "half_crop") and "too thin" in str(exc)
        return
    assert blob.shape == (channels, h, w) and blob.dtype == np.float32
    assert blob.flags.c_contiguous
    assert blob.min() >= 0 and blob.max() <= 255


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 50), st.integers(1, 50), st.integers(1, 50), st.integers(1, 50), st.booleans())
def test_squash_is_pil_resize(in_h, in_w, h, w, colour):
    image = rng_image((in_h, in_w, 3) if colour else (in_h, in_w), seed=in_h + 100 * in_w)
    expected = image if (in_h, in_w) == (h, w) else pil_resize(image, h, w)
    assert np.array_equal(resize_image(image, h, w, "squash"), expected)


# ----------------------------------------------------------------------------- blobs


def test_bgr_swap_and_rgb_order():
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    bgr = preprocess(rgb, PreprocessSpec(channels=3, height=2, width=3, channel_order="BGR"))
    assert bgr.shape == (3, 2, 3)
    assert [bgr[c, 0, 0] for c in range(3)] == [30, 20, 10]
    kept = preprocess(rgb, PreprocessSpec(channels=3, height=2, width=3, channel_order="RGB"))
    assert [kept[c, 1, 2] for c in range(3)] == [10, 20, 30]


def test_hwc_to_chw_keeps_positions():
    rgb = rng_image((4, 5, 3), seed=30)
    blob = preprocess(rgb, PreprocessSpec(channels=3, height=4, width=5))
    assert blob[2, 3, 1] == rgb[3, 1, 0] and blob[0, 1, 4] == rgb[1, 4, 2]


def test_mean_image_pixel_and_scale():
    grey = rng_image((4, 4), seed=31)
    mean_image = np.arange(16, dtype=np.float32).reshape(1, 4, 4) * 10.5
    spec = PreprocessSpec(channels=1, height=4, width=4, mean_kind="image", mean=mean_image)
    assert np.array_equal(preprocess(grey, spec)[0], grey.astype(np.float32) - mean_image[0])

    rgb = rng_image((4, 4, 3), seed=32)
    pixel = np.array([104.0, 117.0, 123.0], dtype=np.float32)  # B, G, R
    spec = PreprocessSpec(channels=3, height=4, width=4, mean_kind="pixel", mean=pixel, scale=0.5)
    blob = preprocess(rgb, spec)
    assert blob[0, 2, 1] == (float(rgb[2, 1, 2]) - 104.0) * 0.5
    assert blob[2, 0, 3] == (float(rgb[0, 3, 0]) - 123.0) * 0.5
    expected = (rgb[..., ::-1].transpose(2, 0, 1).astype(np.float32) - pixel[:, None, None]) * np.float32(0.5)
    assert np.array_equal(blob, expected)


def test_float64_mean_subtracted_like_caffe():
    # caffe.io.Transformer: float32 blob -= float64 mean (computed in float64, stored float32)
    grey = rng_image((3, 3), seed=33)
    mean = np.full((1, 3, 3), 1 / 3, dtype=np.float64)
    spec = PreprocessSpec(channels=1, height=3, width=3, mean_kind="image", mean=mean)
    caffe_in = grey.astype(np.float32)[np.newaxis]
    caffe_in -= mean
    assert np.array_equal(preprocess(grey, spec), caffe_in)


def test_batch_equals_single_and_empty(tmp_path):
    spec = PreprocessSpec(channels=3, height=12, width=10, resize_mode="crop")
    sources = [rng_image((20, 30, 3), seed=34), save(Image.fromarray(rng_image((15, 9), seed=35)), tmp_path, "g.png")]
    batch = preprocess_batch(sources, spec)
    assert batch.shape == (2, 3, 12, 10) and batch.dtype == np.float32
    for i, source in enumerate(sources):
        assert np.array_equal(batch[i], preprocess(source, spec))
    assert preprocess_batch([], spec).shape == (0, 3, 12, 10)


# ----------------------------------------------------------------------------- mean resize


def test_resize_mean_same_size_truncates_through_uint8():
    mean = np.array([[[12.9, 0.0], [255.0, 100.5]]])
    out = resize_mean(mean, 2, 2)
    assert out.dtype == np.float32
    assert out.tolist() == [[[12.0, 0.0], [255.0, 100.0]]]


def test_resize_mean_grey_is_pil_bilinear_on_uint8():
    mean = np.random.default_rng(36).integers(0, 256, (1, 32, 32)).astype(np.float64) + 0.75
    out = resize_mean(mean, 28, 28)
    assert out.shape == (1, 28, 28)
    assert np.array_equal(out[0], pil_resize(np.floor(mean[0]).astype(np.uint8), 28, 28).astype(np.float32))
    assert np.all(resize_mean(np.full((1, 9, 9), 100.0), 4, 5) == 100.0)


def test_resize_mean_colour_resizes_each_channel_in_place():
    mean = np.random.default_rng(37).integers(0, 256, (3, 20, 24)).astype(np.float32)
    out = resize_mean(mean, 11, 13)
    assert out.shape == (3, 11, 13) and out.flags.c_contiguous
    for c in range(3):  # channel c stays channel c (BGR order preserved)
        assert np.array_equal(out[c], pil_resize(mean[c].astype(np.uint8), 11, 13))


def test_resize_mean_refuses_non_digits_values():
    with pytest.raises(DecoderError, match=r"0\.\.255") as info:
        resize_mean(np.full((1, 2, 2), -3.0), 4, 4, path="mean.binaryproto")
    assert "mean.binaryproto" in str(info.value)
    with pytest.raises(DecoderError):
        resize_mean(np.zeros((2, 4, 4)), 4, 4)


# ----------------------------------------------------------------------------- real DIGITS sample


@pytest.mark.shared
def test_digits_sample_rgba_zero_blob():
    sample = DIGITS_LENET / "samples" / "mnist_complete_zero.png"
    mean_file = DIGITS_LENET / "mean.binaryproto"
    if not sample.is_file() or not mean_file.is_file():
        pytest.skip(f"shared DIGITS LeNet sample not found under {DIGITS_LENET}")
    from decoder.caffe_proto import caffe_pb2

    blob_proto = caffe_pb2.BlobProto()
    blob_proto.ParseFromString(mean_file.read_bytes())
    shape = (blob_proto.channels, blob_proto.height, blob_proto.width)
    assert shape == (1, 28, 28)
    mean = np.array(blob_proto.data, dtype=np.float32).reshape(shape)

    rgba = np.asarray(Image.open(sample))
    assert rgba.shape == (28, 28, 4)
    by_hand = luma(on_white(rgba[..., :3], rgba[..., 3])).astype(np.float32) - mean[0]

    spec = PreprocessSpec(channels=1, height=28, width=28, mean_kind="image", mean=resize_mean(mean, 28, 28))
    blob = preprocess(sample, spec)
    assert blob.shape == (1, 28, 28)
    assert np.array_equal(blob[0], by_hand)
