"""The model's preprocessing of an image file as code a user can paste: numpy + Pillow, or pycaffe.

Both are generated from the model's own spec, line by line: no mean line without a mean,
no channel swap for an RGB model, the multiply only with a scale, the resize mode's own
code (squash; crop's centre cut; fill and half_crop through decode's seeded noise
padding), and the second, pycaffe resize of models trained with ``crop_size``. The tests
execute the numpy text (and the pycaffe text against a stand-in ``caffe.io.Transformer``)
and compare the blob with :meth:`decoder.runtime.Model.preprocess`.

Names the snippets expect: ``path`` (the image file), ``mean`` (``Model.load(m).spec.mean``,
only for a mean image), ``np``, ``Image`` (Pillow); pycaffe adds ``caffe`` and ``net``.
"""

from __future__ import annotations

from decoder.spec import PreprocessSpec


def _float(value: float) -> str:
    """A float that reads back exactly (104.00699, 0.00390625, 255.0)."""
    return repr(float(value))


def _load_and_resize(spec: PreprocessSpec) -> list[str]:
    """Lines that leave ``x``: the image at the size DIGITS resizes to with PIL, uint8 (H, W[, 3])."""
    mode = "L" if spec.channels == 1 else "RGB"
    height, width = spec.dataset_size or (spec.height, spec.width)
    lines = [f"img = Image.open(path).convert({mode!r})  # Pillow as DIGITS loads it: no EXIF rotation"]
    if spec.resize_mode == "squash":
        lines.append(f"img = img.resize(({width}, {height}), Image.BILINEAR)  # squash (a same-size image is kept)")
        lines.append("x = np.asarray(img)")
    elif spec.resize_mode == "crop":
        lines += [
            "w, h = img.size",
            f"if w * {height} > h * {width}:  # too wide: fit the height, keep the centre of the width",
            f"    img = img.resize((int(w / (h / {height}) + 0.5), {height}), Image.BILINEAR)",
            f"    left = int((img.size[0] - {width}) / 2.0 + 0.5)  # Python 2 rounding, as DIGITS",
            f"    img = img.crop((left, 0, left + {width}, {height}))",
            f"elif w * {height} < h * {width}:  # too tall: fit the width, keep the centre of the height",
            f"    img = img.resize(({width}, int(h / (w / {width}) + 0.5)), Image.BILINEAR)",
            f"    top = int((img.size[1] - {height}) / 2.0 + 0.5)",
            f"    img = img.crop((0, top, {width}, top + {height}))",
            "else:",
            f"    img = img.resize(({width}, {height}), Image.BILINEAR)",
            "x = np.asarray(img)",
        ]
    else:
        lines += [
            f"from decoder.preprocess import resize_image  # {spec.resize_mode}: DIGITS pads with random noise 0..254",
            f"x = resize_image(np.asarray(img), {height}, {width}, {spec.resize_mode!r}, "
            f"np.random.default_rng({spec.seed}))  # decode seeds it so blobs repeat",
        ]
    return lines


def _summary(spec: PreprocessSpec) -> str:
    mean = {"image": "minus the mean image", "pixel": "minus the mean pixel", "none": "no mean"}[spec.mean_kind]
    scale = f", times {spec.scale:g}" if spec.scale != 1.0 else ", no scaling"
    return f"0..255 pixels {mean}{scale}"


def numpy_snippet(spec: PreprocessSpec) -> str:
    """The model's preprocessing of one image file in numpy + Pillow: ``blob`` (1, C, H, W) float32."""
    lines = _load_and_resize(spec)
    if spec.dataset_size is not None:
        lines += [
            "from decoder.preprocess import caffe_resize_image  # = pycaffe's caffe.io.resize_image",
            f"x = caffe_resize_image(x, {spec.height}, {spec.width})  # crop_size model: squash to the input, float",
        ]
    if lines[-1] == "x = np.asarray(img)":
        lines[-1] = "x = np.asarray(img, dtype=np.float32)"
    else:
        lines.append("x = np.asarray(x, dtype=np.float32)")
    if spec.channels == 1 and spec.dataset_size is not None:
        lines.append("x = x.transpose(2, 0, 1)  # (H, W, 1) -> (1, H, W)")
    elif spec.channels == 1:
        lines.append("x = x[np.newaxis]  # (1, H, W)")
    elif spec.channel_order == "BGR":
        lines.append("x = x[:, :, ::-1].transpose(2, 0, 1)  # RGB -> BGR, HWC -> CHW")
    else:
        lines.append("x = x.transpose(2, 0, 1)  # HWC -> CHW; the model takes RGB: no channel swap")
    lines += _numpy_mean_and_scale(spec)
    lines.append(f"blob = np.ascontiguousarray(x[np.newaxis])  # (1, C, H, W): {_summary(spec)}")
    return "\n".join(lines)


def _numpy_mean_and_scale(spec: PreprocessSpec) -> list[str]:
    lines = []
    if spec.mean_kind == "image":
        lines.append("x -= mean  # the mean image (C, H, W): Model.load(model).spec.mean")
    elif spec.mean_kind == "pixel" and spec.mean is not None:
        values = ", ".join(_float(v) for v in spec.mean)
        lines.append(f"x -= np.array([{values}], np.float32)[:, None, None]  # the mean pixel, network order")
    if spec.scale != 1.0:
        lines.append(f"x *= np.float32({_float(spec.scale)})")
    return lines


def pycaffe_snippet(spec: PreprocessSpec) -> str:
    """The same with pycaffe's ``caffe.io.Transformer``, fed 0..255 pixels as DIGITS feeds it."""
    name = spec.input_name
    lines = _load_and_resize(spec)
    if spec.channels == 1:
        lines.append("x = x[:, :, np.newaxis]  # (H, W, 1)")
    lines += [
        f"t = caffe.io.Transformer({{{name!r}: net.blobs[{name!r}].data.shape}})",
        f"t.set_transpose({name!r}, (2, 0, 1))",
    ]
    if spec.channels == 3 and spec.channel_order == "BGR":
        lines.append(f"t.set_channel_swap({name!r}, (2, 1, 0))  # RGB -> BGR")
    if spec.mean_kind == "image":
        lines.append(f"t.set_mean({name!r}, mean)  # the mean image (C, H, W): Model.load(model).spec.mean")
    elif spec.mean_kind == "pixel" and spec.mean is not None:
        values = ", ".join(_float(v) for v in spec.mean)
        lines.append(f"t.set_mean({name!r}, np.array([{values}]))  # the mean pixel")
    if spec.scale != 1.0:
        lines.append(f"t.set_input_scale({name!r}, {_float(spec.scale)})")
    resize = " (and squashes it to the input with caffe.io.resize_image)" if spec.dataset_size else ""
    lines.append(f"blob = t.preprocess({name!r}, x)[np.newaxis]  # 0..255 pixels{resize}")
    lines.append(f"# fed caffe.io.load_image's [0,1] floats instead, add t.set_raw_scale({name!r}, 255)")
    lines.append("# then net.forward(), not Classifier.predict (it averages 10 oversampled crops)")
    return "\n".join(lines)
