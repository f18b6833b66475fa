"""Build the project's own demo model: a DIGITS-style LeNet trained here, on digits rendered here.

Why: the converter, the runtime and the diagnostics need a realistic DIGITS export that
the project may ship and regenerate, and third-party model files may not go into git.
This script produces one from nothing but the fonts on this machine:

1. renders the digits 0-9 with every usable font (system fonts, matplotlib's bundled
   fonts, Pillow's built-in font) under random affine jitter, stroke width, blur,
   contrast and noise, as 28x28 DARK digits on WHITE, the polarity of DIGITS's MNIST;
2. computes the mean image the way DIGITS's ``create_db`` does (rounded to uint8);
3. trains DIGITS's standard LeNet in NumPy (im2col + matmul, SGD with momentum, the
   DIGITS solver defaults), feeding ``(x - mean) * 0.0125`` like DIGITS's Data layer;
4. writes a DIGITS "Download Model" folder (deploy/train_val/solver prototxt, snapshot
   caffemodel, mean.binaryproto, labels.txt, info.json) into ``--work``;
5. writes a few held-out digits as PNG samples;
6. checks the files with OpenCV's independent Caffe reader (same softmax as NumPy within
   1e-4) and, when ``decoder.conversion`` exists, converts them to ONNX and checks the
   .onnx through ``decoder.runtime`` (softmax on the held-out set, labels of the samples).

Everything is seeded: the same fonts give byte-identical files. The installed system
fonts are part of the input. By default only matplotlib's and Pillow's bundled fonts
are used, which are the same on every machine with the same package versions, so the
shipped model can be rebuilt byte for byte; ``--system-fonts`` adds the machine's fonts.
Run: ``python scripts/build_demo_lenet.py [--work build/demo_lenet]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageDraw, ImageFilter, ImageFont

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script from anywhere: `decoder` lives in the repo root
    sys.path.insert(0, str(REPO_ROOT))

import caffe_writer  # noqa: E402  (sibling module; scripts/ is sys.path[0] when run as a script)

SIDE = 28  # DIGITS MNIST images are 28x28 grayscale
DIGIT_BOX = 20.0  # MNIST fits each digit's longer side into 20 px, centred in 28
SUPERSAMPLE = 4  # render at 4x and box-average down: antialiased edges like scanned ink
GLYPH_SIZE = 64  # font size of the glyph bank
STROKES = (0, 2, 4)  # extra stroke widths at GLYPH_SIZE: thin, medium, bold pens
LABELS = tuple(str(d) for d in range(10))

# Fonts without ordinary lining digits (math symbols, size variants, old-style numerals, fallback boxes).
EXCLUDED_FONT_PREFIXES = ("cmex", "cmsy", "cmmi", "STIXSize", "STIXNonUni", "LastResort")

DEFAULT_WORK = REPO_ROOT / "build" / "demo_lenet"
# The shipped demo lives inside the package so the wheel carries it (converted_models/ links there).
DEFAULT_SAMPLES = REPO_ROOT / "decoder" / "demo" / "files" / "samples"
DEFAULT_ONNX = REPO_ROOT / "decoder" / "demo" / "files" / "lenet.onnx"
SAMPLE_DIGITS = (0, 2, 3, 5, 7, 9)
OPENCV_TOLERANCE = 1e-4  # float32 softmax from two implementations of the same net

Params = dict[str, list[np.ndarray]]  # layer name -> [weights, bias], Caffe blob order and shapes


# --------------------------------------------------------------------------- dataset


def font_files(system: bool = True) -> list[Path]:
    """TrueType/OpenType fonts bundled with matplotlib and (``system``) installed here, by file name.

    The dataset, hence the weights, depend on this list: ``system=False`` keeps only the
    fonts that ship inside the matplotlib wheel, for a build that is byte-identical on
    any machine with the same package versions. matplotlib's copies of DejaVu and the
    system's are deduplicated by name so DejaVu does not count twice.
    """
    roots = [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts"] if system else []
    try:
        import matplotlib

        roots.insert(0, Path(matplotlib.get_data_path()) / "fonts" / "ttf")
    except ImportError:  # matplotlib is only in the dev extra; system fonts and Pillow's own font remain
        pass
    found: dict[str, Path] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() in (".ttf", ".otf") and not path.name.startswith(EXCLUDED_FONT_PREFIXES):
                found.setdefault(path.name, path)
    return [found[name] for name in sorted(found)]


def _render_glyph(font: ImageFont.FreeTypeFont, digit: str, stroke: int) -> Image.Image | None:
    """White-on-black glyph cropped to its ink; None when the font draws nothing."""
    canvas = Image.new("L", (3 * GLYPH_SIZE, 3 * GLYPH_SIZE), 0)
    centre = 1.5 * GLYPH_SIZE
    ImageDraw.Draw(canvas).text(
        (centre, centre), digit, font=font, fill=255, anchor="mm", stroke_width=stroke, stroke_fill=255
    )
    box = canvas.getbbox()
    return canvas.crop(box) if box else None


def _distinct(glyphs: Sequence[Image.Image]) -> bool:
    """A font that maps digits to one placeholder box would teach the net nothing."""
    thumbs = [np.asarray(g.resize((12, 12), Image.Resampling.BILINEAR), dtype=np.int16) for g in glyphs]
    return all(np.abs(a - b).mean() > 4 for i, a in enumerate(thumbs) for b in thumbs[i + 1 :])


def glyph_bank(fonts: Sequence[Path]) -> tuple[list[list[Image.Image]], list[str]]:
    """Glyph images per digit (index = digit) over usable fonts x stroke widths, and the font names.

    Pillow's built-in scalable font (``load_default(size)``) is always included, so the
    bank is never empty even on a machine without font files.
    """
    loaded: list[tuple[str, ImageFont.FreeTypeFont]] = []
    for path in fonts:
        try:
            loaded.append((path.name, ImageFont.truetype(str(path), GLYPH_SIZE)))
        except OSError:  # unreadable or collection-only files: skip, the bank is large enough
            continue
    builtin = ImageFont.load_default(GLYPH_SIZE)
    if isinstance(builtin, ImageFont.FreeTypeFont):
        loaded.append(("pillow-default", builtin))
    bank: list[list[Image.Image]] = [[] for _ in LABELS]
    names: list[str] = []
    for name, font in loaded:
        plain = [_render_glyph(font, d, 0) for d in LABELS]
        if any(g is None for g in plain) or not _distinct(plain):  # type: ignore[arg-type]
            continue
        names.append(name)
        for stroke in STROKES:
            for digit, label in enumerate(LABELS):
                glyph = _render_glyph(font, label, stroke)
                assert glyph is not None  # the plain glyph had ink, a thicker pen has more
                bank[digit].append(glyph)
    if not names:
        raise RuntimeError("no font can render the digits 0-9; install fonts-dejavu or Pillow with FreeType")
    return bank, names


def _place(glyph: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """Ink coverage 0..1 of one glyph, jittered (scale, aspect, shear, rotation, shift) into 28x28."""
    gw, gh = glyph.size
    scale = DIGIT_BOX / max(gw, gh) * rng.uniform(0.8, 1.05)
    angle = np.deg2rad(rng.uniform(-12.0, 12.0))
    shear = rng.uniform(-0.25, 0.25)
    aspect = np.exp(rng.uniform(-0.12, 0.12))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    forward = scale * rotation @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([aspect, 1.0 / aspect])
    target = SIDE / 2 + rng.uniform(-2.0, 2.0, size=2)
    # PIL's AFFINE maps OUTPUT pixels back to INPUT pixels: p = inv(F) (out / S - target) + centre.
    inverse = np.linalg.inv(forward)
    linear = inverse / SUPERSAMPLE
    offset = np.array([gw / 2, gh / 2]) - inverse @ target
    coeffs = (linear[0, 0], linear[0, 1], offset[0], linear[1, 0], linear[1, 1], offset[1])
    big = glyph.transform(
        (SIDE * SUPERSAMPLE, SIDE * SUPERSAMPLE), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR
    )
    small = big.reduce(SUPERSAMPLE)
    if rng.random() < 0.6:
        small = small.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 1.0)))
    return np.asarray(small, dtype=np.float32) / 255.0


def make_digits(count: int, seed: int, bank: Sequence[Sequence[Image.Image]]) -> tuple[np.ndarray, np.ndarray]:
    """``count`` balanced, shuffled samples: uint8 (N, 28, 28) dark-on-white images and int64 labels.

    Paper and ink vary (background 225..255, darkest ink 0..70, Gaussian noise up to
    sigma 10) because real photographed digits are never pure black on pure white;
    most backgrounds stay exactly 255 as in DIGITS's MNIST.
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % len(LABELS)).astype(np.int64)
    images = np.empty((count, SIDE, SIDE), dtype=np.uint8)
    for i, label in enumerate(labels):
        choices = bank[label]
        ink = _place(choices[rng.integers(len(choices))], rng)
        paper = 255.0 if rng.random() < 0.8 else rng.uniform(225.0, 255.0)
        darkest = rng.uniform(0.0, 70.0)
        pixels = paper - ink * (paper - darkest)
        if rng.random() < 0.4:
            pixels = pixels + rng.normal(0.0, rng.uniform(1.0, 10.0), size=pixels.shape)
        images[i] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return images, labels


def image_mean(images: np.ndarray) -> np.ndarray:
    """DIGITS's mean image: ``np.around(sum / count).astype(uint8)``, here as (1, H, W)."""
    total = images.astype(np.float64).sum(axis=0)
    return np.around(total / len(images)).astype(np.uint8)[np.newaxis]


# --------------------------------------------------------------------------- the network


def init_params(rng: np.random.Generator) -> Params:
    """Caffe's fillers: xavier = U(+-sqrt(3 / fan_in)), bias constant 0."""

    def xavier(shape: tuple[int, ...]) -> np.ndarray:
        limit = np.sqrt(3.0 / int(np.prod(shape[1:])))
        return rng.uniform(-limit, limit, size=shape).astype(np.float32)

    shapes = {"conv1": (20, 1, 5, 5), "conv2": (50, 20, 5, 5), "ip1": (500, 800), "ip2": (10, 500)}
    return {name: [xavier(shape), np.zeros(shape[0], np.float32)] for name, shape in shapes.items()}


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Valid stride-1 convolution (Caffe's cross-correlation) of NHWC ``x``; returns (out, im2col)."""
    k = w.shape[-1]
    windows = sliding_window_view(x, (k, k), axis=(1, 2))  # (N, OH, OW, C, k, k): Caffe's (C, kh, kw) order
    n, oh, ow = windows.shape[:3]
    cols = windows.reshape(n * oh * ow, -1)
    out = cols @ w.reshape(w.shape[0], -1).T + b
    return out.reshape(n, oh, ow, -1), cols


def _conv_input_grad(dout: np.ndarray, w: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
    """col2im of ``dout @ W``: every kernel tap adds its slice back onto the input."""
    n, oh, ow, _ = dout.shape
    c, k = w.shape[1], w.shape[-1]
    dcols = (dout.reshape(-1, w.shape[0]) @ w.reshape(w.shape[0], -1)).reshape(n, oh, ow, c, k, k)
    dx = np.zeros(in_shape, dtype=dout.dtype)
    for i in range(k):
        for j in range(k):
            dx[:, i : i + oh, j : j + ow, :] += dcols[..., i, j]
    return dx


def _pool(x: np.ndarray) -> np.ndarray:
    """MAX 2x2 stride 2 on even sizes, where Caffe's ceil rounding adds no partial window."""
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _pool_grad(x: np.ndarray, pooled: np.ndarray, dpooled: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    hits = x.reshape(n, h // 2, 2, w // 2, 2, c) == pooled[:, :, None, :, None, :]
    return (hits * dpooled[:, :, None, :, None, :]).reshape(n, h, w, c)


def _logits(params: Params, scaled: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """LeNet from the scaled blob (NHWC) to ip2; keeps what backprop needs."""
    conv1, cols1 = _conv(scaled, *params["conv1"])
    pool1 = _pool(conv1)
    conv2, cols2 = _conv(pool1, *params["conv2"])
    pool2 = _pool(conv2)
    flat = pool2.transpose(0, 3, 1, 2).reshape(len(scaled), -1)  # Caffe flattens C, H, W
    ip1 = flat @ params["ip1"][0].T + params["ip1"][1]
    relu = np.maximum(ip1, 0)
    ip2 = relu @ params["ip2"][0].T + params["ip2"][1]
    cache = {"cols1": cols1, "conv1": conv1, "pool1": pool1, "cols2": cols2, "conv2": conv2, "pool2": pool2}
    cache |= {"flat": flat, "ip1": ip1, "relu": relu}
    return ip2, cache


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def deploy_forward(params: Params, blob: np.ndarray) -> np.ndarray:
    """What deploy.prototxt computes: ``blob`` is (N, 1, 28, 28) pixels minus mean; returns softmax."""
    scaled = np.asarray(blob, dtype=np.float32) * np.float32(caffe_writer.INPUT_SCALE)  # the Power layer
    logits, _ = _logits(params, scaled.transpose(0, 2, 3, 1))
    return _softmax(logits)


def loss_and_grads(params: Params, scaled: np.ndarray, labels: np.ndarray) -> tuple[float, Params]:
    """Mean softmax cross-entropy (Caffe's SoftmaxWithLoss, VALID normalisation) and its gradients."""
    logits, c = _logits(params, scaled)
    n = len(labels)
    probs = _softmax(logits)
    loss = float(-np.log(np.maximum(probs[np.arange(n), labels], 1e-30)).mean())
    d_ip2 = probs
    d_ip2[np.arange(n), labels] -= 1
    d_ip2 /= n
    d_relu = d_ip2 @ params["ip2"][0]
    d_ip1 = d_relu * (c["ip1"] > 0)
    d_flat = d_ip1 @ params["ip1"][0]
    d_pool2 = d_flat.reshape(c["pool2"].transpose(0, 3, 1, 2).shape).transpose(0, 2, 3, 1)
    d_conv2 = _pool_grad(c["conv2"], c["pool2"], d_pool2)
    d_pool1 = _conv_input_grad(d_conv2, params["conv2"][0], c["pool1"].shape)
    d_conv1 = _pool_grad(c["conv1"], c["pool1"], d_pool1)
    d2 = d_conv2.reshape(-1, d_conv2.shape[-1])
    d1 = d_conv1.reshape(-1, d_conv1.shape[-1])
    grads = {
        "ip2": [d_ip2.T @ c["relu"], d_ip2.sum(axis=0)],
        "ip1": [d_ip1.T @ c["flat"], d_ip1.sum(axis=0)],
        "conv2": [(d2.T @ c["cols2"]).reshape(params["conv2"][0].shape), d2.sum(axis=0)],
        "conv1": [(d1.T @ c["cols1"]).reshape(params["conv1"][0].shape), d1.sum(axis=0)],
    }
    return loss, grads


@dataclass(frozen=True)
class Solver:
    """DIGITS's defaults for LeNet: SGD, lr 0.01 with 'step' decay (gamma 0.1 every 33%), momentum 0.9."""

    epochs: float = 3.0
    batch_size: int = 64
    base_lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    step_fraction: float = 0.33
    seed: int = 0

    def iterations(self, train_count: int) -> int:
        return max(1, round(self.epochs * train_count / self.batch_size))

    def stepsize(self, train_count: int) -> int:
        return max(1, round(self.step_fraction * self.iterations(train_count)))


def scaled_input(images: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """DIGITS's Data layer: ``(pixels - mean) * 0.0125``, as NHWC float32."""
    diff = images.astype(np.float32) - mean[0].astype(np.float32)
    return (diff * np.float32(caffe_writer.INPUT_SCALE))[..., np.newaxis]


def train(images: np.ndarray, labels: np.ndarray, mean: np.ndarray, solver: Solver, log: bool = True) -> Params:
    """Caffe's SGD: ``v = m v + lr * lr_mult * (g + wd * w)``, ``w -= v``; biases at lr_mult 2."""
    rng = np.random.default_rng(solver.seed)
    params = init_params(rng)
    velocity = {name: [np.zeros_like(p) for p in blobs] for name, blobs in params.items()}
    scaled = scaled_input(images, mean)
    iterations, stepsize = solver.iterations(len(images)), solver.stepsize(len(images))
    order = rng.permutation(len(images))
    cursor, running = 0, None
    for it in range(iterations):
        if cursor + solver.batch_size > len(order):
            order, cursor = rng.permutation(len(images)), 0
        batch = order[cursor : cursor + solver.batch_size]
        cursor += solver.batch_size
        loss, grads = loss_and_grads(params, scaled[batch], labels[batch])
        lr = solver.base_lr * 0.1 ** (it // stepsize)
        for name, blobs in params.items():
            for idx, (p, g, v) in enumerate(zip(blobs, grads[name], velocity[name], strict=True)):
                lr_mult = 1.0 if idx == 0 else 2.0
                v *= solver.momentum
                v += (lr * lr_mult) * (g + solver.weight_decay * p)
                p -= v
        running = loss if running is None else 0.98 * running + 0.02 * loss
        if log and (it + 1) % max(1, iterations // 8) == 0:
            print(f"  iter {it + 1}/{iterations}  lr {lr:.4g}  loss {running:.4f}", flush=True)
    return params


def predict(params: Params, images: np.ndarray, mean: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Softmax of the deploy net for uint8 images, batched to bound memory."""
    blob = (images.astype(np.float32) - mean[0].astype(np.float32))[:, np.newaxis]
    return np.concatenate([deploy_forward(params, blob[i : i + batch]) for i in range(0, len(blob), batch)])


# --------------------------------------------------------------------------- files


def write_model(work: Path, params: Params, mean: np.ndarray, solver: Solver, train_count: int) -> Path:
    """A flat DIGITS download folder in ``work``; returns the caffemodel path."""
    work.mkdir(parents=True, exist_ok=True)
    iterations = solver.iterations(train_count)
    snapshot = f"snapshot_iter_{iterations}.caffemodel"
    train_val = caffe_writer.train_val_net(mean_file="mean.binaryproto", train_batch=solver.batch_size)
    caffe_writer.write_text(caffe_writer.deploy_net(), work / "deploy.prototxt")
    caffe_writer.write_text(train_val, work / "train_val.prototxt")
    (work / "solver.prototxt").write_text(
        caffe_writer.solver_text(
            solver.base_lr, solver.momentum, solver.weight_decay, iterations, solver.stepsize(train_count)
        ),
        encoding="utf-8",
    )
    caffe_writer.write_binary(caffe_writer.snapshot_net(train_val, params), work / snapshot)
    caffe_writer.write_binary(caffe_writer.mean_blob(mean), work / "mean.binaryproto")
    (work / "labels.txt").write_text("".join(f"{label}\n" for label in LABELS), encoding="utf-8")
    info = {
        "image dimensions": [SIDE, SIDE, 1],
        "image resize mode": "squash",
        "framework": "caffe",
        "snapshot file": snapshot,
        "mean file": "mean.binaryproto",
        "labels file": "labels.txt",
        "deploy file": "deploy.prototxt",
        "train_val file": "train_val.prototxt",
        "solver file": "solver.prototxt",
    }
    (work / "info.json").write_text(json.dumps(info, indent=4, sort_keys=True) + "\n", encoding="utf-8")
    return work / snapshot


def write_samples(folder: Path, images: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> list[Path]:
    """One typical held-out image per digit in SAMPLE_DIGITS, for demos and smoke tests.

    Among the images of a digit the net classifies correctly with p > 0.95, the one
    nearest to their average is taken: a plain, legible digit rather than the first draw,
    which may be the boldest, blurriest or faintest of the lot.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for digit in SAMPLE_DIGITS:
        good = np.flatnonzero((labels == digit) & (probs.argmax(axis=1) == digit) & (probs.max(axis=1) > 0.95))
        if len(good) == 0:
            continue
        candidates = images[good].astype(np.float64)
        typical = good[int(((candidates - candidates.mean(axis=0)) ** 2).sum(axis=(1, 2)).argmin())]
        path = folder / f"digit_{digit}.png"
        Image.fromarray(images[typical], mode="L").save(path, optimize=True)
        written.append(path)
    return written


def opencv_softmax(deploy: Path, caffemodel: Path, images: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """The same images through OpenCV's own Caffe importer: proof that the files are valid Caffe."""
    import cv2

    net = cv2.dnn.readNetFromCaffe(str(deploy), str(caffemodel))
    blob = (images.astype(np.float32) - mean[0].astype(np.float32))[:, np.newaxis]
    outputs = []
    for i in range(0, len(blob), 500):
        net.setInput(np.ascontiguousarray(blob[i : i + 500]))
        outputs.append(net.forward().reshape(len(blob[i : i + 500]), -1))
    return np.concatenate(outputs)


def convert_and_check(work: Path, onnx_path: Path, blob: np.ndarray, probs: np.ndarray, samples: list[Path]) -> str:
    """Convert with ``decoder.conversion`` when it exists, then run the .onnx through ``decoder.runtime``.

    The converted model must reproduce the NumPy softmax on the held-out blobs, and the
    full DIGITS pipeline (PNG -> preprocessing stored in the .onnx -> label) must name
    the digit each sample file is named after.
    """
    try:
        from decoder.conversion import convert
        from decoder.runtime import Model
        from decoder.sources import open_sources
    except ImportError as exc:
        return f"conversion skipped ({exc}); the caffe files are in {work}"
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    with open_sources(work) as sources:
        convert(sources, onnx_path)
    model = Model.load(onnx_path)
    diff = float(np.abs(model.probabilities(blob) - probs).max())
    labels = [p.label for p in model.predict(samples)] if samples else []
    named = [path.stem.removeprefix("digit_") for path in samples]
    verdict = "all correct" if labels == named else f"MISMATCH {labels} vs {named}"
    return f"converted to {onnx_path}: max |softmax diff| vs NumPy {diff:.2e}; samples via decoder.runtime: {verdict}"


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", type=Path, default=DEFAULT_WORK, help="folder for the Caffe/DIGITS files")
    p.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES, help="folder for the sample PNGs")
    p.add_argument("--onnx", type=Path, default=DEFAULT_ONNX, help="where the converted model goes")
    p.add_argument("--no-convert", action="store_true", help="do not call decoder.conversion")
    p.add_argument("--train-size", type=int, default=20000)
    p.add_argument("--test-size", type=int, default=4000)
    p.add_argument(
        "--system-fonts",
        action="store_true",
        help="also use the fonts installed on this machine (the result then depends on the machine)",
    )
    p.add_argument("--epochs", type=float, default=Solver.epochs)
    p.add_argument("--seed", type=int, default=0, help="seeds data (seed, seed+1) and training (seed+2)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.perf_counter()

    bank, fonts = glyph_bank(font_files(system=args.system_fonts))
    print(f"fonts: {len(fonts)} usable ({', '.join(fonts)})")
    train_images, train_labels = make_digits(args.train_size, args.seed, bank)
    test_images, test_labels = make_digits(args.test_size, args.seed + 1, bank)
    mean = image_mean(train_images)
    made = time.perf_counter()
    print(f"dataset: {len(train_images)} train + {len(test_images)} held-out images in {made - started:.1f} s")

    solver = Solver(epochs=args.epochs, seed=args.seed + 2)
    params = train(train_images, train_labels, mean, solver)
    trained = time.perf_counter()

    train_probs = predict(params, train_images, mean)
    test_probs = predict(params, test_images, mean)
    train_acc = float((train_probs.argmax(1) == train_labels).mean())
    test_acc = float((test_probs.argmax(1) == test_labels).mean())

    caffemodel = write_model(args.work, params, mean, solver, len(train_images))
    samples = write_samples(args.samples, test_images, test_labels, test_probs)
    cv_probs = opencv_softmax(args.work / "deploy.prototxt", caffemodel, test_images, mean)
    agreement = float((cv_probs.argmax(1) == test_probs.argmax(1)).mean())
    max_diff = float(np.abs(cv_probs - test_probs).max())
    if args.no_convert:
        conversion = "conversion not requested (--no-convert)"
    else:
        blob = (test_images.astype(np.float32) - mean[0].astype(np.float32))[:, np.newaxis]
        conversion = convert_and_check(args.work, args.onnx, blob, test_probs, samples)
    finished = time.perf_counter()

    print(f"train accuracy     {train_acc:.4f}  ({len(train_images)} images)")
    print(f"held-out accuracy  {test_acc:.4f}  ({len(test_images)} images, independent draws)")
    print(f"OpenCV vs NumPy    argmax agreement {agreement:.4f}, max |softmax diff| {max_diff:.2e}")
    print(f"files              {args.work} ({caffemodel.name}); samples: {', '.join(p.name for p in samples)}")
    print(conversion)
    print(
        f"seconds            data {made - started:.1f}, training {trained - made:.1f}, total {finished - started:.1f}"
    )
    if max_diff > OPENCV_TOLERANCE:
        print(f"FAILED: OpenCV disagrees with the NumPy net by more than {OPENCV_TOLERANCE}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
