"""DIGITS's image preprocessing, reproduced bit for bit: file -> float32 (C, H, W) blob.

A classifier only gives DIGITS's answers when it is fed DIGITS's pixels, so every step
here follows the upstream source (NVIDIA/DIGITS, DIGITS 5/6):

1. :func:`load_image` - ``digits/utils/image.py`` ``load_image``: PIL decode, mode
   normalisation (transparency composited onto white), 16-bit/float modes refused; then
   ``image_to_array``'s channel conversion through PIL (``convert('L')`` / ``convert('RGB')``).
2. :func:`resize_image` - ``digits/utils/image.py`` ``resize_image``: squash / crop /
   fill / half_crop with ``scipy.misc.imresize(..., interp='bilinear')``, which for uint8
   input is exactly Pillow's ``Image.resize(size, BILINEAR)``.
3. :func:`preprocess` - ``digits/model/tasks/caffe_train.py`` ``get_transformer`` +
   ``caffe.io.Transformer.preprocess``: float32, HWC -> CHW, RGB -> BGR for 3 channels,
   minus the mean. DIGITS applies no scale; ``spec.scale`` exists for plain Caffe models.
4. :func:`resize_mean` - ``caffe_train.py`` ``get_mean_image(resize=True)``: the mean
   image goes through uint8 and PIL bilinear to the deploy input size.
5. :func:`caffe_resize_image` - only for models trained with ``crop_size`` (a 256x256
   dataset, a 227x227 input: ``spec.dataset_height`` / ``dataset_width`` are set).
   ``digits/tools/inference.py`` resizes to the DATASET size in step 2, and
   ``caffe.io.Transformer.preprocess`` then squashes that to the input with
   ``caffe.io.resize_image``: float32, normalised to [0, 1] by the image's own min/max,
   scikit-image's order-1 ``resize`` of the DIGITS years (``mode='constant'``, no
   anti-aliasing), scaled back. We reimplement that resize in numpy (no scikit-image at
   run time); it matches scikit-image's ``warp`` bit for bit, up to the last-bit noise of
   the SVD with which scikit-image 0.12/0.13 fitted its affine matrix (measured: 1 float32
   value in ~20,000 differs for 256 -> 224, 1 in ~3,000,000 for 256 -> 227, each by one unit
   in the last place). The mean image is still resized once, with PIL, from the dataset
   size to the input (step 4).

One deliberate departure: DIGITS pads ``fill`` / ``half_crop`` images with
``np.random.randint`` noise, so the same file gives a different blob on every call. Here
the noise comes from a caller-supplied generator (``preprocess`` seeds it with
``spec.seed`` for each image), so the same image always gives the same blob.

Without a dataset size (every model not trained with ``crop_size``, and .onnx files
written before the field existed) there is one resize, with PIL, straight to the input.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image

from decoder.errors import DecoderError
from decoder.spec import RESIZE_MODES, PreprocessSpec

ImageSource = str | os.PathLike[str] | np.ndarray | Image.Image

#: Largest image (width * height) we agree to decode: Pillow's own default
#: ``Image.MAX_IMAGE_PIXELS``. Checked from the header, before the pixels are decoded, so a
#: tiny "decompression bomb" file cannot allocate gigabytes. Read at call time (patchable).
MAX_IMAGE_PIXELS = 89_478_485

# DIGITS load_image: these modes come back unchanged, or via a plain PIL conversion.
_PASS_MODES = ("L", "RGB")
_TO_L_MODES = ("1",)
_TO_RGB_MODES = ("CMYK", "YCbCr")
# ... and these are pasted onto a white canvas with their own alpha as the mask.
_ON_WHITE_L_MODES = ("LA",)
_ON_WHITE_RGB_MODES = ("P", "RGBA")
_WIDE_MODES = ("I", "F", "I;16", "I;16L", "I;16B", "I;16N", "I;32", "I;32L", "I;32B", "F;32")

_ACCEPTED = "8-bit modes L, RGB, 1, LA, P, RGBA, CMYK and YCbCr"
_CONVERT_HINT = (
    "convert it to 8 bits first, e.g. `magick in.png -depth 8 out.png` or in Python "
    "`Image.fromarray((np.asarray(Image.open(p), dtype=np.uint32) >> 8).astype(np.uint8))` for 16-bit data"
)


# --------------------------------------------------------------------------- loading


def load_image(source: ImageSource, channels: int) -> np.ndarray:
    """Decode ``source`` the way DIGITS does and return uint8 HxW (1 channel) or HxWx3 RGB.

    ``source`` is a file path, a PIL image, or a uint8 numpy array (HxW, HxWx1, HxWx3 RGB
    or HxWx4 RGBA), the arrays being treated exactly like the PIL image of the same mode.

    Mode handling is DIGITS's ``load_image``: L and RGB pass; ``1`` -> L; CMYK and YCbCr ->
    RGB; RGBA, P (with or without palette transparency) and LA are pasted onto a WHITE
    canvas using their alpha as the mask (a transparent background becomes white, not
    black); every other mode - notably 16-bit and float (I, I;16, F) - is refused, as
    DIGITS refuses it. The result is then converted to ``channels`` with PIL
    (``convert('L')`` uses ITU-R 601-2 luma, L = R*299/1000 + G*587/1000 + B*114/1000,
    in PIL's fixed-point arithmetic, so it is bit-identical to DIGITS's ``image_to_array``).

    Files are decoded with PIL without EXIF rotation (DIGITS never calls ``exif_transpose``;
    ``cv2.imread`` would rotate). The returned array may be read-only (no needless copy).
    """
    if channels not in (1, 3):
        raise DecoderError(f"images can be loaded with 1 or 3 channels, not {channels}")
    if isinstance(source, np.ndarray):
        return _array_to_channels(source, channels)
    if isinstance(source, Image.Image):
        label = getattr(source, "filename", "") or None
        width, height = source.size
        _check_size(width, height, label)
        try:
            source.load()
        except Exception as exc:  # Pillow plugins raise many types on corrupt data
            raise DecoderError(f"cannot decode the image ({_describe(exc)})", label) from None
        return _pil_to_channels(_digits_mode(source, label), channels)
    if isinstance(source, (str, os.PathLike)):
        return _pil_to_channels(_open_file(source), channels)
    kind = type(source).__name__
    raise DecoderError(f"cannot read an image from a {kind}; give a file path, a PIL image or a uint8 array")


def _open_file(path: str | os.PathLike[str]) -> Image.Image:
    """Open, size-check, decode and mode-normalise one file; every failure names it."""
    if os.path.isdir(path):
        raise DecoderError("is a directory, not an image file", path)
    try:
        if os.path.getsize(path) == 0:
            raise DecoderError("is an empty file (0 bytes), not an image", path)
    except FileNotFoundError:
        raise DecoderError("no such image file", path) from None
    except OSError as exc:
        raise DecoderError(f"cannot read the image file ({_describe(exc)})", path) from None
    try:
        with Image.open(path) as image:
            width, height = image.size
            _check_size(width, height, path)
            image.load()
            return _digits_mode(image, path)
    except DecoderError:
        raise
    except Image.DecompressionBombError as exc:
        raise DecoderError(f"refused as a possible decompression bomb ({exc})", path) from None
    except Image.UnidentifiedImageError:
        raise DecoderError("not an image file Pillow can read (unknown or corrupt format)", path) from None
    except Exception as exc:  # truncated data, broken chunks: OSError, SyntaxError, ValueError, ...
        reason = _describe(exc)
        raise DecoderError(f"cannot decode the image, the file is truncated or corrupt ({reason})", path) from None


def _check_size(width: int, height: int, path: str | os.PathLike[str] | None) -> None:
    """Refuse, from the header alone, images with no pixels or too many (a decompression bomb).

    A 0-pixel image would otherwise be "resized" by Pillow into a blob of made-up pixels.
    """
    if width <= 0 or height <= 0:
        raise DecoderError(f"the image is {width}x{height}: it has no pixels", path)
    if width * height > MAX_IMAGE_PIXELS:
        raise DecoderError(_bomb_message(width, height), path)


def _bomb_message(width: int, height: int) -> str:
    return (
        f"image of {width}x{height} = {width * height:,} pixels exceeds the limit of "
        f"{MAX_IMAGE_PIXELS:,} pixels (decoder.preprocess.MAX_IMAGE_PIXELS; possible decompression bomb); "
        "downscale it first"
    )


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _digits_mode(image: Image.Image, path: str | os.PathLike[str] | None) -> Image.Image:
    """DIGITS ``load_image``'s mode table: returns an image of mode L or RGB."""
    mode = image.mode
    if mode in _PASS_MODES:
        return image
    if mode in _TO_L_MODES:
        return image.convert("L")
    if mode in _TO_RGB_MODES:
        return image.convert("RGB")
    if mode in _ON_WHITE_L_MODES or mode in _ON_WHITE_RGB_MODES:
        # Verbatim DIGITS: paste onto white with the RGBA conversion as mask (Pillow takes
        # the mask's alpha band; a P image's tRNS transparency shows up in that alpha).
        white = Image.new("L", image.size, 255) if mode == "LA" else Image.new("RGB", image.size, (255, 255, 255))
        with warnings.catch_warnings():
            # Pillow advises converting P images with per-entry alpha to RGBA: that is this line.
            warnings.filterwarnings("ignore", "Palette images with Transparency", UserWarning)
            white.paste(image, mask=image.convert("RGBA"))
        return white
    if mode in _WIDE_MODES:
        raise DecoderError(
            f"image mode {mode!r} (16-bit integer or 32-bit float pixels) is refused by DIGITS, whose "
            f"load_image only accepts {_ACCEPTED}; {_CONVERT_HINT}",
            path,
        )
    raise DecoderError(f"image mode {mode!r} is refused by DIGITS, whose load_image only accepts {_ACCEPTED}", path)


def _pil_to_channels(image: Image.Image, channels: int) -> np.ndarray:
    """DIGITS ``image_to_array`` for a PIL image: convert with PIL, then to numpy."""
    target = "L" if channels == 1 else "RGB"
    if image.mode != target:
        image = image.convert(target)
    return np.asarray(image)


def _array_to_channels(array: np.ndarray, channels: int) -> np.ndarray:
    """A uint8 array, handled as the PIL image of the matching mode would be."""
    if array.dtype != np.uint8:
        raise DecoderError(
            f"image arrays must be uint8 (0..255) like DIGITS's decoded images, not {array.dtype}; "
            "scale and convert them first, e.g. `np.clip(a * 255, 0, 255).astype(np.uint8)` for 0..1 floats"
        )
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise DecoderError(f"an image array must be HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA), not shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DecoderError(f"the image array is empty (shape {array.shape})")
    if array.ndim == 2:
        if channels == 1:
            return array
        # PIL's L -> RGB copies the grey value into R, G and B.
        return np.repeat(array[:, :, np.newaxis], 3, axis=2)
    if array.shape[2] == 3 and channels == 3:
        return array
    image = Image.fromarray(np.ascontiguousarray(array))  # RGB or RGBA, by shape
    return _pil_to_channels(_digits_mode(image, None), channels)


# --------------------------------------------------------------------------- resizing


def _py2_round(value: float) -> int:
    """``int(round(value))`` as Python 2 (DIGITS's interpreter) computes it: halves away from zero.

    Python 3's ``round`` sends halves to even (``round(2.5) == 2``), which would shift the
    crop window by one pixel on odd differences. ``value - floor(value)`` is exact in
    binary floating point, so this is correct even just below .5 (unlike ``floor(v + .5)``).
    """
    if value < 0:
        return -_py2_round(-value)
    whole = math.floor(value)
    return int(whole + 1 if value - whole >= 0.5 else whole)


def _pil_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``scipy.misc.imresize(image, (height, width), interp='bilinear')`` for uint8 input.

    scipy's ``toimage`` passes uint8 data through ``bytescale`` unchanged, so this is just
    Pillow's ``Image.resize((width, height), BILINEAR)``, which antialiases when
    downscaling (OpenCV's INTER_LINEAR does not, and gives different pixels).
    """
    if height <= 0 or width <= 0:
        raise DecoderError(
            f"the image ({image.shape[1]}x{image.shape[0]}) is too thin to resize: its short side would "
            f"become {min(height, width)} pixels (DIGITS fails on it too)"
        )
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized)


def resize_image(
    image: np.ndarray, height: int, width: int, mode: str, rng: np.random.Generator | None = None
) -> np.ndarray:
    """DIGITS's ``resize_image`` (``digits/utils/image.py``): uint8 HxW or HxWx3 in, uint8 out.

    - An image already ``height`` x ``width`` is returned as is: no resampling, no copy.
    - ``squash`` (or any mode when both ratios are equal): one resize to the target.
    - ``crop``: resize so the short side fits (the other side ``round(len / ratio)``), then
      keep the centre window starting at ``round((len - target) / 2)``.
    - ``fill``: resize so the long side fits, bumping the short side by one when the
      leftover is odd, then pad both ends with the SAME block of noise 0..254.
    - ``half_crop``: resize by the mean of the two ratios, centre-cut the long side, and
      noise-pad the short side as ``fill`` does.

    Every ``round`` is Python 2's (halves away from zero), every resample Pillow bilinear
    (see :func:`_pil_bilinear`). The crop/fill/half_crop result may be a view of the resized
    image.

    Noise: DIGITS draws it from the global ``np.random.randint(0, 255, ...)``, so its
    fill/half_crop blobs change from call to call. We draw ``rng.integers(0, 255, ...)``
    instead, from ``rng`` (a fresh ``np.random.default_rng(0)`` when None);
    :func:`preprocess` passes ``np.random.default_rng(spec.seed)`` for every image, so the
    same image always yields the same blob. The values still follow DIGITS's distribution
    (uniform 0..254), but not its exact draws, which were never reproducible.
    """
    if mode not in RESIZE_MODES:
        raise DecoderError(f"unknown resize mode {mode!r}; expected one of {', '.join(RESIZE_MODES)}")
    if height <= 0 or width <= 0:
        raise DecoderError(f"cannot resize to {width}x{height}: both sides must be positive")
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise DecoderError(f"resize_image takes a uint8 HxW or HxWx3 array, not {image.dtype} {image.shape}")
    in_height, in_width = image.shape[:2]
    if in_height == height and in_width == width:
        return image

    width_ratio = float(in_width) / width
    height_ratio = float(in_height) / height
    if mode == "squash" or width_ratio == height_ratio:
        return _pil_bilinear(image, height, width)
    wide = width_ratio > height_ratio  # too wide for the target: the width is what gets cut/fitted

    if mode == "crop":
        if wide:
            resized = _pil_bilinear(image, height, _py2_round(in_width / height_ratio))
            start = _py2_round((resized.shape[1] - width) / 2.0)
            return resized[:, start : start + width]
        resized = _pil_bilinear(image, _py2_round(in_height / width_ratio), width)
        start = _py2_round((resized.shape[0] - height) / 2.0)
        return resized[start : start + height, :]

    if mode == "fill":
        if wide:
            resize_width, resize_height = width, _py2_round(in_height / width_ratio)
            resize_height += (height - resize_height) % 2
        else:
            resize_width, resize_height = _py2_round(in_width / height_ratio), height
            resize_width += (width - resize_width) % 2
        content = _pil_bilinear(image, resize_height, resize_width)
    else:  # half_crop
        new_ratio = (width_ratio + height_ratio) / 2.0
        resize_width = _py2_round(in_width / new_ratio)
        resize_height = _py2_round(in_height / new_ratio)
        if wide:
            resize_height += (height - resize_height) % 2
        else:
            resize_width += (width - resize_width) % 2
        content = _pil_bilinear(image, resize_height, resize_width)
        if wide:
            start = _py2_round((resize_width - width) / 2.0)
            content = content[:, start : start + width]
        else:
            start = _py2_round((resize_height - height) / 2.0)
            content = content[start : start + height, :]

    generator = rng if rng is not None else np.random.default_rng(0)
    extra = image.shape[2:]
    if wide:
        noise = generator.integers(0, 255, ((height - resize_height) // 2, width, *extra), dtype=np.uint8)
        return np.concatenate((noise, content, noise), axis=0)
    noise = generator.integers(0, 255, (height, (width - resize_width) // 2, *extra), dtype=np.uint8)
    return np.concatenate((noise, content, noise), axis=1)


# --------------------------------------------------------------------------- pycaffe's resize (crop_size models)


def caffe_resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``caffe.io.resize_image(image, (height, width))`` as DIGITS's pycaffe ran it: float32 (height, width, K).

    DIGITS's ``Transformer.preprocess`` calls it when the image (already at the dataset
    size) differs from the network input, i.e. for models trained with ``crop_size``. Its
    1- and 3-channel branch (``python/caffe/io.py``), computed with the same dtypes:

    - ``im = image.astype(float32)`` (an HxW array is taken as HxWx1);
    - ``im_min, im_max = im.min(), im.max()`` over ALL channels together; when they are
      equal the result is that constant, with no interpolation at all;
    - otherwise ``im_std = (im - im_min) / (im_max - im_min)`` in float32, resized by
      scikit-image (:func:`_skimage_resize_linear`, float64), then
      ``(resized * (im_max - im_min) + im_min).astype(float32)``.

    The [0, 1] normalisation matters beyond rounding: the zero that scikit-image's
    'constant' mode blends in at the borders when upscaling is ``im_min``, not black.
    """
    im = np.asarray(image)
    if im.ndim == 2:
        im = im[:, :, np.newaxis]
    if im.ndim != 3 or im.shape[2] not in (1, 3) or min(im.shape) == 0:
        raise DecoderError(f"caffe_resize_image takes an HxW, HxWx1 or HxWx3 image, not shape {im.shape}")
    if height <= 0 or width <= 0:
        raise DecoderError(f"cannot resize to {width}x{height}: both sides must be positive")
    im = im.astype(np.float32, copy=False)
    im_min, im_max = im.min(), im.max()  # float32 scalars, as in pycaffe
    if not im_max > im_min:
        return np.full((height, width, im.shape[2]), im_min, dtype=np.float32)
    span = im_max - im_min
    resized = _skimage_resize_linear((im - im_min) / span, height, width)
    resized *= np.float64(span)  # float64 array times float32 scalar: float64, as in pycaffe
    resized += np.float64(im_min)
    return resized.astype(np.float32)


def _skimage_resize_linear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``skimage.transform.resize(image, (height, width), order=1)`` of scikit-image 0.12-0.14: float64.

    What pycaffe's ``resize(im_std, new_dims, order=interp_order)`` computed with the
    scikit-image of the DIGITS years (defaults ``mode='constant'``, ``cval=0``,
    ``clip=True``, and no anti-aliasing, which only appeared in 0.14 and became the default
    in 0.15, along with ``mode='reflect'``). For an HxWxK image and a 2-value output shape
    that ``resize`` is a ``warp`` with the affine map that puts pixel centres at +0.5
    (``x_src = (W_in / W_out) * (x + 0.5) - 0.5``, rows alike), run by the Cython
    ``_warp_fast`` per channel, whose bilinear sample at ``(r, c)`` is::

        top = (1 - dc) * P[floor r, floor c] + dc * P[floor r, ceil c]
        bottom = (1 - dc) * P[ceil r, floor c] + dc * P[ceil r, ceil c]
        value = (1 - dr) * top + dr * bottom

    with ``P`` = ``cval`` (0) outside the image; then the output is clipped to the input's
    [min, max] (keeping exact ``cval`` values when ``cval`` lies outside it). This
    evaluates the same float64 expressions in the same order, so it gives the same bits,
    except for one thing no reimplementation can copy: 0.12-0.13 fit the affine matrix to
    three corner points with an SVD (``AffineTransform.estimate``), whose last-bit noise
    (~1e-16, and LAPACK-dependent) we replace by the exact matrix.
    """
    rows, cols, channels = image.shape

    def taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Padded indices of the two neighbours of each output sample, and the weight of the second."""
        scale = float(size_in) / size_out
        # _warp_fast's  H[0] * x + H[1] * y + H[2]  with H[1] == 0 and H[2] = scale * 0.5 - 0.5
        coords = scale * np.arange(size_out, dtype=np.float64) + (scale * 0.5 - 0.5)
        low = np.floor(coords)
        # Pixel centres always stay within (-1, size_in): the clip is a no-op kept for safety;
        # an index landing on the border reads cval, exactly as get_pixel2d's bounds check does.
        low_index = np.clip(low.astype(np.intp) + 1, 0, size_in + 1)
        high_index = np.clip(np.ceil(coords).astype(np.intp) + 1, 0, size_in + 1)
        return low_index, high_index, coords - low

    row_low, row_high, dr = taps(rows, height)
    col_low, col_high, dc = taps(cols, width)
    dr = dr[:, np.newaxis]
    out = np.empty((height, width, channels), dtype=np.float64)
    padded = np.zeros((rows + 2, cols + 2), dtype=np.float64)  # 'constant' border, cval 0
    # One channel at a time, as _warp_fast does (and small temporaries are much cheaper here).
    for channel in range(channels):
        padded[1:-1, 1:-1] = image[:, :, channel]
        # top/bottom rows of every sample, for every padded input row: the same products and
        # sums as _warp_fast, computed once per (input row, output column) instead of per sample.
        across = (1 - dc) * padded[:, col_low] + dc * padded[:, col_high]
        out[:, :, channel] = (1 - dr) * across[row_low] + dr * across[row_high]
    low_value, high_value = image.min(), image.max()
    if low_value <= 0.0 <= high_value:
        np.clip(out, low_value, high_value, out=out)
    else:  # _clip_warp_output's preserve_cval: samples equal to cval survive the clip
        keep = out == 0.0
        np.clip(out, low_value, high_value, out=out)
        out[keep] = 0.0
    return out


# --------------------------------------------------------------------------- blobs


def preprocess(source: ImageSource, spec: PreprocessSpec) -> np.ndarray:
    """One image -> the float32 (C, H, W) blob DIGITS feeds the network.

    ``load_image`` -> ``resize_image`` (noise seeded with ``spec.seed``; to the dataset size
    first, then :func:`caffe_resize_image` to the input, when ``spec`` has one) -> HWC to CHW ->
    RGB to BGR when 3 channels and ``spec.channel_order == "BGR"`` -> minus ``spec.mean``
    (image (C,H,W) or pixel (C,), in network channel order) -> times ``spec.scale``.
    The order and the float32 arithmetic follow ``caffe.io.Transformer.preprocess``
    (``data.astype(float32)``, transpose, channel swap, ``-= mean``, ``*= input_scale``).
    """
    out = np.empty((spec.channels, spec.height, spec.width), dtype=np.float32)
    _preprocess_into(source, spec, out)
    return out


def preprocess_batch(sources: Sequence[ImageSource], spec: PreprocessSpec) -> np.ndarray:
    """Many images -> float32 (N, C, H, W), each exactly as :func:`preprocess` makes it."""
    out = np.empty((len(sources), spec.channels, spec.height, spec.width), dtype=np.float32)
    for index, source in enumerate(sources):
        _preprocess_into(source, spec, out[index])
    return out


def resize_for_input(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Loaded pixels (uint8 HxW or HxWx3 RGB, from :func:`load_image`) at the input size, as DIGITS resizes them.

    Usually one :func:`resize_image` to the input (uint8 out; fill/half_crop noise seeded
    with ``spec.seed``). When ``spec`` has a dataset size (crop_size models), DIGITS's two
    stages: :func:`resize_image` to the dataset size, then :func:`caffe_resize_image` to
    the input (float32 out, not rounded: pycaffe never goes back to uint8). HxW or HxWx3
    either way, channels still RGB.
    """
    dataset_size = spec.dataset_size
    height, width = dataset_size or (spec.height, spec.width)
    # A fresh generator per image makes the noise padding a function of (image, seed) only;
    # squash, crop and same-size images never draw, so they skip the ~10 us it costs.
    noisy = spec.resize_mode in ("fill", "half_crop") and pixels.shape[:2] != (height, width)
    rng = np.random.default_rng(spec.seed) if noisy else None
    pixels = resize_image(pixels, height, width, spec.resize_mode, rng)
    if dataset_size is None:
        return pixels
    resized = caffe_resize_image(pixels, spec.height, spec.width)
    return resized[:, :, 0] if resized.shape[2] == 1 else resized


def _preprocess_into(source: ImageSource, spec: PreprocessSpec, out: np.ndarray) -> None:
    """Write one blob into ``out`` (C, H, W) float32 with a single uint8 -> float32 pass."""
    pixels = resize_for_input(load_image(source, spec.channels), spec)
    if pixels.ndim == 2:
        out[0] = pixels
    elif spec.channel_order == "BGR":
        out[...] = pixels.transpose(2, 0, 1)[::-1]
    else:
        out[...] = pixels.transpose(2, 0, 1)
    if spec.mean is not None:
        mean = spec.mean if spec.mean.ndim == 3 else spec.mean.reshape(-1, 1, 1)
        np.subtract(out, mean, out=out, casting="unsafe")
    if spec.scale != 1.0:
        out *= np.float32(spec.scale)


def takes_grey_batches(spec: PreprocessSpec) -> bool:
    """Whether :func:`grey_batch_into` applies to ``spec``: a 1-channel net fed at the loaded size.

    Why: for folders of small digits the per-image steps of :func:`preprocess` (load,
    resize, cast, mean) cost more than decoding the PNG; a uint8 HxW image already at the
    input size goes through none of them but the cast and the mean, which are elementwise
    and so give the same float32 values done once for the whole batch.
    """
    return spec.channels == 1 and spec.dataset_size is None


def grey_batch_into(pixels: np.ndarray, spec: PreprocessSpec, out: np.ndarray) -> None:
    """uint8 (N, H, W) grey images at the input size -> ``out`` (N, 1, H, W) float32.

    Bit for bit what :func:`preprocess` makes of each image (``load_image`` passes a uint8
    HxW array through for 1 channel, ``resize_image`` returns a same-size image as is, and
    the cast, ``- mean`` and ``* scale`` below are :func:`_preprocess_into`'s elementwise
    steps, broadcast over the batch). Only for specs where :func:`takes_grey_batches`.
    """
    if not takes_grey_batches(spec) or pixels.dtype != np.uint8 or pixels.shape[1:] != (spec.height, spec.width):
        raise DecoderError(f"grey_batch_into takes uint8 (N, {spec.height}, {spec.width}) images for a 1-channel spec")
    out[:, 0] = pixels
    if spec.mean is not None:
        mean = spec.mean if spec.mean.ndim == 3 else spec.mean.reshape(-1, 1, 1)
        np.subtract(out, mean, out=out, casting="unsafe")
    if spec.scale != 1.0:
        out *= np.float32(spec.scale)


def resize_mean(
    mean_chw: np.ndarray, height: int, width: int, path: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """The mean image as DIGITS subtracts it from a (height, width) input: float32 (C, H, W).

    Follows ``CaffeTrainTask.get_mean_image(mean_file, resize=True)``
    (``digits/model/tasks/caffe_train.py``), which ``get_transformer`` always calls for
    ``use_mean == 'image'``::

        mean_image = mean_image.astype('uint8').transpose(1, 2, 0)
        mean_image = scipy.misc.imresize(mean_image, (H, W))  # 1 channel: on [:, :, 0]
        mean_image = mean_image.transpose(2, 0, 1).astype('float')

    So the mean is RESIZED (not centre-cropped as Caffe's training crop does), with PIL
    bilinear (scipy's default interp) on uint8 data, and it goes through uint8 even when no
    resize is needed: fractional values are truncated toward zero. A DIGITS mean holds
    integer-valued floats 0..255, for which that is lossless. ``imresize`` to the same size
    is a plain copy. Channels are resized independently, so BGR order is kept.

    A mean with values outside 0..255 cannot come from DIGITS and has no defined uint8
    image; it is refused rather than silently wrapped (``path`` names it in the message).
    """
    mean = np.asarray(mean_chw)
    if mean.ndim != 3 or mean.shape[0] not in (1, 3) or min(mean.shape) == 0:
        raise DecoderError(f"a mean image must be (C, H, W) with 1 or 3 channels, not shape {mean.shape}", path)
    if height <= 0 or width <= 0:
        raise DecoderError(f"cannot resize the mean image to {width}x{height}", path)
    if not np.all(np.isfinite(mean)) or mean.min() < 0 or mean.max() >= 256:
        raise DecoderError(
            f"mean image values span {np.nanmin(mean):g}..{np.nanmax(mean):g}; DIGITS passes the mean image "
            "through uint8 to resize it, so it must lie in 0..255",
            path,
        )
    pixels = mean.astype(np.uint8)  # truncation toward zero, like numpy's astype('uint8') in DIGITS
    pixels = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
    if pixels.shape[:2] != (height, width):
        pixels = _pil_bilinear(np.ascontiguousarray(pixels), height, width)
    if pixels.ndim == 2:
        return pixels[np.newaxis].astype(np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)
