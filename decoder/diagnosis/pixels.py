"""Pixels as DIGITS sees them, and what they reveal when set beside the training mean.

Diagnosis works on the network-order pixel blob ``Q`` (float32 N, C, H, W, values 0..255,
BGR for colour, before the mean): DIGITS's blob is ``(Q - mean) * scale``. Keeping ``Q``
lets the blob fit (:mod:`decoder.diagnosis.blobs`) and the variants
(:mod:`decoder.diagnosis.variants`) express every user mistake as an operation on it.

The mean image is the average of the training pixels, so a batch of in-distribution
images averages to something close to it. Far from it, but close to ``255 - mean``, means
inverted images (raw MNIST is white on black; DIGITS's MNIST is dark on white).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from decoder.preprocess import ImageSource, load_image, resize_for_input
from decoder.spec import PreprocessSpec

#: Levels (0..255) the batch average must differ from the mean before we call it inverted.
POLARITY_MIN_GAP = 40.0
#: ... and inverting must bring it at least this much closer.
POLARITY_MIN_GAIN = 25.0


def network_pixels(images: Sequence[ImageSource], spec: PreprocessSpec) -> np.ndarray:
    """DIGITS's load + resize of each image, in network order: float32 (N, C, H, W), 0..255, no mean."""
    out = np.empty((len(images), spec.channels, spec.height, spec.width), np.float32)
    for index, image in enumerate(images):
        out[index] = to_network_order(resize_for_input(load_image(image, spec.channels), spec), spec)
    return out


def to_network_order(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 HxW or HxWx3 RGB -> float32 (C, H, W) in the network's channel order."""
    if pixels.ndim == 2:
        return pixels[np.newaxis].astype(np.float32)
    chw = pixels.transpose(2, 0, 1)
    if spec.channel_order == "BGR":
        chw = chw[::-1]
    return chw.astype(np.float32)


def mean_field(spec: PreprocessSpec) -> np.ndarray:
    """The mean DIGITS subtracts, broadcastable to (C, H, W) (zeros for ``none``)."""
    if spec.mean is None:
        return np.zeros((spec.channels, 1, 1), np.float32)
    if spec.mean.ndim == 1:
        return spec.mean.reshape(-1, 1, 1).astype(np.float32)
    return spec.mean.astype(np.float32)


def digits_blob(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """``(Q - mean) * scale``: what DIGITS feeds for network-order pixels ``Q``."""
    blob = pixels - mean_field(spec)
    if spec.scale != 1.0:
        blob = blob * np.float32(spec.scale)
    return blob.astype(np.float32)


@dataclass(frozen=True)
class PixelCheck:
    """How the batch's average pixels compare with the training mean."""

    batch_level: float  # average pixel value of the batch, 0..255
    mean_level: float  # average of the training mean
    correlation: float  # spatial correlation of the batch average with the mean image (nan if flat)
    inverted: bool
    channel_levels: tuple[float, ...] = ()  # per channel, network order
    mean_channel_levels: tuple[float, ...] = ()
    swapped: bool = False


def check_pixels(pixels: np.ndarray, spec: PreprocessSpec, check_channels: bool) -> PixelCheck | None:
    """Compare the batch average of network-order pixels with the mean; None without a mean.

    ``check_channels`` asks whether the colour channels look reversed; only meaningful when
    the pixels were reconstructed from a user's blob (pixels DIGITS decoded itself are in
    the right order by construction).
    """
    if spec.mean is None or len(pixels) == 0:
        return None
    mean = np.broadcast_to(mean_field(spec), pixels.shape[1:]).astype(np.float64)
    average = pixels.astype(np.float64).mean(axis=0)
    batch_level, mean_level = float(average.mean()), float(mean.mean())
    correlation = _correlation(average, mean)
    gap, gap_inverted = abs(batch_level - mean_level), abs(255.0 - batch_level - mean_level)
    # Levels only tell when the training data was far from mid-grey (MNIST: 222); a photo
    # mean (~115) says nothing about whether a bright batch is inverted.
    lopsided = abs(mean_level - 127.5) >= POLARITY_MIN_GAP
    inverted = lopsided and gap >= POLARITY_MIN_GAP and gap - gap_inverted >= POLARITY_MIN_GAIN
    if not np.isnan(correlation) and correlation <= -0.5 and gap_inverted < gap:
        inverted = True
    levels = tuple(float(v) for v in average.mean(axis=(1, 2)))
    mean_levels = tuple(float(v) for v in mean.mean(axis=(1, 2)))
    swapped = False
    if check_channels and spec.channels == 3:
        direct = float(np.linalg.norm(np.subtract(levels, mean_levels)))
        reverse = float(np.linalg.norm(np.subtract(levels[::-1], mean_levels)))
        spread = abs(mean_levels[0] - mean_levels[2])
        swapped = spread >= 8.0 and reverse < 0.5 * direct and direct - reverse >= 8.0
    return PixelCheck(batch_level, mean_level, correlation, inverted, levels, mean_levels, swapped)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spatial Pearson correlation (each channel's own level removed); nan when the mean is flat.

    Channel levels are left out on purpose: reversed channel levels would otherwise read as
    an inverted picture. A mean pixel has no spatial pattern, hence nan.
    """
    a = (a - a.mean(axis=(1, 2), keepdims=True)).ravel()
    b = (b - b.mean(axis=(1, 2), keepdims=True)).ravel()
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm < 1e-6 or float(b.std()) < 2.0:
        return float("nan")
    return float(a @ b / norm)
