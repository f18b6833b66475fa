"""The fix, as code: DIGITS's preprocessing in numpy and pycaffe, and a repair of the user's blob.

The repair is both an operation (:meth:`Repair.apply`, used to verify the fix before it
is offered) and numpy text (:meth:`Repair.numpy_code`, what the user copies); the tests
execute the text and check that it computes the same as ``apply``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from decoder.diagnosis.blobs import BlobTransform
from decoder.diagnosis.pixels import digits_blob
from decoder.spec import PreprocessSpec


def _number(value: float) -> str:
    """A float as users write it: 255.0, 0.0125, -127.5."""
    text = f"{value:.10g}"
    return text if any(ch in text for ch in ".en") else f"{text}.0"


def digits_numpy(spec: PreprocessSpec) -> str:
    """DIGITS's preprocessing of one image file in plain numpy + Pillow."""
    mode = "L" if spec.channels == 1 else "RGB"
    lines = [
        f"img = Image.open(path).convert({mode!r})  # Pillow, no EXIF rotation",
        f"img = img.resize(({spec.width}, {spec.height}), Image.BILINEAR)  # squash; skip if already that size",
        "x = np.asarray(img, dtype=np.float32)",
    ]
    if spec.channels == 1:
        lines.append("x = x[np.newaxis]  # (1, H, W)")
    elif spec.channel_order == "BGR":
        lines.append("x = x[:, :, ::-1].transpose(2, 0, 1)  # RGB -> BGR, HWC -> CHW")
    else:
        lines.append("x = x.transpose(2, 0, 1)  # HWC -> CHW")
    if spec.mean_kind == "image":
        lines.append("x -= mean  # the mean image (C, H, W): Model.load(model).spec.mean")
    elif spec.mean_kind == "pixel" and spec.mean is not None:
        values = ", ".join(f"{v:g}" for v in spec.mean)
        lines.append(f"x -= np.array([{values}], np.float32)[:, None, None]  # mean pixel")
    if spec.scale != 1.0:
        lines.append(f"x *= {_number(spec.scale)}")
    lines.append("blob = x[np.newaxis]  # (1, C, H, W): 0..255 pixels minus the mean, no /255")
    return "\n".join(lines)


def digits_pycaffe(spec: PreprocessSpec) -> str:
    """The same with pycaffe's ``caffe.io.Transformer`` and ``caffe.io.load_image`` ([0,1] floats)."""
    name = spec.input_name
    lines = [
        f"t = caffe.io.Transformer({{{name!r}: net.blobs[{name!r}].data.shape}})",
        f"t.set_transpose({name!r}, (2, 0, 1))",
    ]
    if spec.channels == 3 and spec.channel_order == "BGR":
        lines.append(f"t.set_channel_swap({name!r}, (2, 1, 0))  # RGB -> BGR")
    lines.append(f"t.set_raw_scale({name!r}, 255)  # load_image gives [0,1]; the net wants 0..255")
    if spec.mean_kind == "image":
        lines.append(f"t.set_mean({name!r}, mean)  # mean image (C, H, W) from mean.binaryproto")
    elif spec.mean_kind == "pixel" and spec.mean is not None:
        values = ", ".join(f"{v:g}" for v in spec.mean)
        lines.append(f"t.set_mean({name!r}, np.array([{values}]))  # mean pixel")
    if spec.scale != 1.0:
        lines.append(f"t.set_input_scale({name!r}, {spec.scale:g})")
    color = "False" if spec.channels == 1 else "True"
    lines.append(f"blob = t.preprocess({name!r}, caffe.io.load_image(path, color={color}))")
    lines.append("# and use net.forward(), not Classifier.predict (it averages 10 oversampled crops)")
    return "\n".join(lines)


@dataclass(frozen=True)
class Repair:
    """Turn the user's blob into DIGITS's: undo their transform, then fix the pixels themselves.

    ``invert_pixels`` / ``reverse_channels`` are about the pixels (e.g. white-on-black
    images for a net trained on dark-on-white), beyond what the user's code did to them.
    """

    transform: BlobTransform
    spec: PreprocessSpec
    invert_pixels: bool = False
    reverse_channels: bool = False

    def apply(self, blob: np.ndarray) -> np.ndarray:
        """DIGITS's blob for the images the user's ``blob`` (N, C, H, W) was made from."""
        pixels = self.transform.pixels_from(np.asarray(blob, dtype=np.float32), self.spec)
        if self.invert_pixels:
            pixels = 255.0 - pixels
        if self.reverse_channels:
            pixels = pixels[:, ::-1]
        return digits_blob(np.ascontiguousarray(pixels), self.spec)

    def numpy_code(self) -> str:
        """numpy that maps ``blob`` (your N, C, H, W batch) to ``fixed``, given ``mean`` as DIGITS uses it."""
        t, spec = self.transform, self.spec
        undo: list[str] = []
        if t.layout == "hwc-reshaped":
            shape = f"-1, {spec.height}, {spec.width}, {spec.channels}"
            undo.append(f"{{x}} = {{x}}.reshape({shape}).transpose(0, 3, 1, 2)  # it was HWC data: to CHW")
        elif t.layout == "transposed":
            undo.append("{x} = {x}.transpose(0, 1, 3, 2)  # H and W were swapped")
        if t.swapped:
            undo.append("{x} = {x}[:, ::-1]  # RGB -> BGR")
        lines = [line.format(x="blob") for line in undo] if t.rearranged_last else []
        lines.append(f"pixels = {_unscale_expression(t, spec)}  # back to 0..255 pixels")
        if not t.rearranged_last:
            lines += [line.format(x="pixels") for line in undo]
        if self.invert_pixels:
            lines.append("pixels = 255.0 - pixels  # the training images had the opposite polarity")
        if self.reverse_channels:
            lines.append("pixels = pixels[:, ::-1]  # the channel order of the training data")
        if spec.mean_kind == "image":
            lines.append("fixed = pixels - mean  # the mean image (C, H, W)")
        elif spec.mean_kind == "pixel":
            lines.append("fixed = pixels - mean.reshape(-1, 1, 1)  # the mean pixel")
        else:
            lines.append("fixed = pixels")
        if spec.scale != 1.0:
            lines.append(f"fixed = fixed * {_number(spec.scale)}")
        lines.append("fixed = np.ascontiguousarray(fixed, dtype=np.float32)")
        return "\n".join(lines)


def _unscale_expression(t: BlobTransform, spec: PreprocessSpec) -> str:
    """``(blob - c*M - b) / a`` written the way a person would."""
    mean_term = ""
    if t.mean_kind == "image":
        mean_term = "mean"
    elif t.mean_kind == "pixel":
        mean_term = "mean.mean(axis=(1, 2), keepdims=True)" if spec.mean_kind == "image" else "mean.reshape(-1, 1, 1)"
    value = "blob"
    if t.b != 0:
        value = f"(blob - {_number(t.b)})" if t.b > 0 else f"(blob + {_number(-t.b)})"
    same_scale = bool(mean_term) and abs(t.c + t.a) <= 1e-9 * max(abs(t.a), 1e-12)
    if mean_term and t.c != 0 and not same_scale:
        value = f"({value} - ({_number(t.c)}) * {mean_term})"
    value = _divide(value, t.a)
    if same_scale:
        value = f"{value} + {mean_term}"
    return value


def _divide(value: str, a: float) -> str:
    """``value / a``, as a multiplication when 1/a is a round number (x 255.0 rather than / 0.00392)."""
    if a == 1.0:
        return value
    inverse = 1.0 / a
    half = round(inverse * 2) / 2
    if half != 0 and abs(inverse - half) <= 1e-6 * abs(inverse):
        return f"{value} * {_number(half)}"
    return f"{value} / {_number(a)}"
