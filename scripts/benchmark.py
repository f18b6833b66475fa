"""Speed and memory on the benchmark ladder, every comparison measured in one run on this machine.

The ladder (``scripts/model_zoo.py``): LeNet, CIFAR-10 quick, AlexNet, GoogLeNet, ResNet-50,
VGG-16 - the standard deploy nets with seeded random weights (speed does not depend on
trained values), written by our own Caffe writer. For each model:

1. Conversion: ``decode convert`` as a fresh process, its peak RSS against the caffemodel's size.
2. Compute, on one preprocessed blob: plain ONNX Runtime with its default session options at
   batch 1 and at its best batch, ``decoder.Model.run`` (``Model.load`` defaults), OpenCV dnn
   ``readNetFromCaffe`` of the same Caffe files; images/s.
3. End to end, fresh processes, start-up included: ``decode DIR --json`` against a naive loop
   (``cv2.imread``, ``cv2.resize``, mean subtraction, one OpenCV forward per image), over
   JPEG photos (about 500x375; colour models) or the 10,000 MNIST test digits (LeNet, when
   ../shared has them); the peak RSS of each process, and of ``decode`` on a list naming the
   photos 10x over. The photos are generated at run time from the sample photographs
   scikit-image ships (random crops, flips), or rendered when it is absent: nothing
   third-party is stored in the repository.
4. Cold start of ``decode ONE_IMAGE`` (its optimized graph already cached, as after a first run); the
   machine's sgemm rate.

``--explore`` adds the measurements behind :mod:`decoder.execution`'s choices: ONNX Runtime
optimization level x threads per model (in CPU-seconds per image).

The machine may be shared: comparisons interleave their sides and report medians; the load
average is printed beside the figures. VGG-16 is slow on 2 cores: choose the ladder with
``--models lenet,resnet50`` and shorten everything with ``--quick``.
Run: ``python scripts/benchmark.py [--models ...] [--quick] [--images 400] [--markdown FILE]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.model_zoo import LADDER, ZooFiles, write_model  # noqa: E402

SMALL_BATCHES = (1, 8, 32, 64, 128, 256)
LARGE_BATCHES = (1, 2, 4, 8, 16)
PHOTO_SIZE = (500, 375)
#: Seconds one end-to-end run of a large net should take at its compute rate: bounds the photos
#: given to VGG-16 (~2 img/s on 2 cores) while ResNet-50 and lighter nets get them all.
END_TO_END_SECONDS = 60
#: Models whose peak RSS is also measured on 10x the photos (the issue's memory target is ResNet-50's).
RSS_10X_MODELS = ("resnet50",)

NAIVE_LOOP = """
import sys, os
import numpy as np, cv2
folder, prototxt, caffemodel, mean_path, out = sys.argv[1:]
net = cv2.dnn.readNetFromCaffe(prototxt, caffemodel)
mean = np.load(mean_path)  # (C, H, W) float32, BGR
channels, height, width = mean.shape
flag = cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_GRAYSCALE
labels = []
for name in sorted(os.listdir(folder)):
    image = cv2.imread(os.path.join(folder, name), flag)
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    blob = image.reshape(height, width, channels).transpose(2, 0, 1).astype(np.float32) - mean
    net.setInput(blob[np.newaxis])
    labels.append(int(net.forward().argmax()))
open(out, "w").write("\\n".join(map(str, labels)))
"""


def interleaved(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, the functions taking turns (so load hits all alike).

    The order reverses on every other repeat: a side that runs right after ONNX Runtime
    shares the cores with its thread pool's spinning for a moment, which cost whichever side
    came second up to 15% on LeNet when the order was fixed.
    """
    times: dict[str, list[float]] = {name: [] for name in functions}
    for repeat in range(repeats):
        order = list(functions.items())
        for name, function in order if repeat % 2 == 0 else reversed(order):
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


#: Runs its arguments as a command and writes that command's peak RSS (KiB) to the file named first.
#: Linux carries a process's peak RSS across fork and exec, so a child of this (big) benchmark
#: process would report at least the benchmark's own size; this small launcher (~10 MB) does not.
LAUNCHER = """
import os, sys
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(command: list[str], stdout: Any = subprocess.DEVNULL) -> tuple[float, int]:
    """Run ``command``; its wall time and its own peak RSS in bytes (through :data:`LAUNCHER`)."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as report:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", LAUNCHER, report.name, *command], stdout=stdout, stderr=subprocess.PIPE
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr.decode(errors='replace')}")
        return seconds, int(report.read()) * 1024


def decode_command() -> list[str]:
    """The installed `decode` entry point beside this interpreter, else `python -m decoder.cli.main`."""
    script = Path(sys.executable).with_name("decode")
    return [str(script)] if script.exists() else [sys.executable, "-m", "decoder.cli.main"]


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


# --------------------------------------------------------------------------- inputs


def write_photos(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` JPEG photos of about 500x375: crops of scikit-image's sample photos, else rendered scenes."""
    from PIL import Image, ImageDraw, ImageFilter

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources: list[Image.Image] = []
    try:
        from skimage import data

        for name in ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "hubble_deep_field", "retina"):
            sources.append(Image.fromarray(np.asarray(getattr(data, name)())[..., :3]))
    except Exception:  # scikit-image absent (or a sample missing): render scenes instead
        sources = []
    for index in range(count):
        width, height = PHOTO_SIZE if rng.random() < 0.75 else PHOTO_SIZE[::-1]
        if sources:
            source = sources[index % len(sources)]
            scale = rng.uniform(0.55, 1.0)
            crop_w = int(min(source.width, source.height * width / height) * scale)
            crop_h = int(crop_w * height / width)
            left = int(rng.integers(0, source.width - crop_w + 1))
            top = int(rng.integers(0, source.height - crop_h + 1))
            image = source.crop((left, top, left + crop_w, top + crop_h)).resize((width, height), Image.BILINEAR)
            if rng.random() < 0.5:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
        else:
            gradient = np.linspace(0, 255, width, dtype=np.float32)[None, :, None] * rng.uniform(0.2, 1.0, 3)
            pixels = np.broadcast_to(gradient, (height, width, 3)) + rng.normal(0, 12, (height, width, 3))
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            draw = ImageDraw.Draw(image)
            for _ in range(12):
                x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
                box = (x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200)))
                draw.ellipse(box, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
            image = image.filter(ImageFilter.GaussianBlur(1.2))
        image.save(folder / f"photo_{index:05d}.jpg", quality=90)
    return folder


def photo_subset(photos: Path, count: int) -> Path:
    """A folder of links to the first ``count`` photos (the whole folder when it holds no more)."""
    names = sorted(p.name for p in photos.iterdir())
    if count >= len(names):
        return photos
    subset = photos.with_name(f"{photos.name}-{count}")
    subset.mkdir(exist_ok=True)
    for name in names[:count]:
        if not (subset / name).exists():
            (subset / name).symlink_to(photos / name)
    return subset


def write_digits(shared: Path, folder: Path) -> tuple[Path, np.ndarray] | None:
    """The 10,000 MNIST test digits as PNGs in DIGITS's polarity, when ../shared has them."""
    from PIL import Image

    images_path = shared / "mnist" / "t10k-images-idx3-ubyte.gz"
    if not images_path.exists():
        return None
    images = np.frombuffer(gzip.decompress(images_path.read_bytes())[16:], np.uint8).reshape(-1, 28, 28)
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(255 - images):  # dark digits on white
        Image.fromarray(image).save(folder / f"{index:05d}.png")
    return folder, images


# --------------------------------------------------------------------------- per model


@dataclass
class Result:
    """Every figure measured for one ladder model."""

    name: str
    parameters: int = 0
    multiply_adds: int = 0
    caffemodel_bytes: int = 0
    convert_seconds: float = 0.0
    convert_rss: int = 0
    ort_batch1: float = 0.0
    ort_best: tuple[int, float] = (0, 0.0)
    run_batch1: float = 0.0
    run_best: tuple[int, float] = (0, 0.0)
    opencv_batch1: float = 0.0
    opencv_best: tuple[int, float] = (0, 0.0)
    images: int = 0
    image_kind: str = ""
    decode_seconds: float = 0.0
    naive_seconds: float = 0.0
    decode_rss: int = 0
    naive_rss: int = 0
    decode_rss_10x: int = 0
    agreement: float = 0.0
    cold_start: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def decode_rate(self) -> float:
        return self.images / self.decode_seconds if self.decode_seconds else 0.0

    @property
    def naive_rate(self) -> float:
        return self.images / self.naive_seconds if self.naive_seconds else 0.0


def convert(files: ZooFiles, output: Path, result: Result) -> None:
    command = [*decode_command(), "convert", str(files.folder), "-o", str(output)]
    result.convert_seconds, result.convert_rss = run_measured(command)
    result.caffemodel_bytes = files.caffemodel.stat().st_size
    print(
        f"  convert: {result.convert_seconds:.1f} s, peak RSS {result.convert_rss / 2**20:,.0f} MB = "
        f"{result.convert_rss / result.caffemodel_bytes:.2f}x the {result.caffemodel_bytes / 2**20:,.0f} MB "
        f"caffemodel ({load()})"
    )


def compute(files: ZooFiles, onnx_path: Path, result: Result, quick: bool, repeats: int) -> None:
    import cv2
    import onnxruntime as ort

    from decoder.runtime import Model

    model = Model.load(onnx_path)
    result.multiply_adds = model.plan.cost.multiply_adds if model.plan.cost else 0
    plain = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])  # ORT's defaults
    net = cv2.dnn.readNetFromCaffe(str(files.prototxt), str(files.caffemodel))
    small = model.plan.small
    batches = SMALL_BATCHES if small else LARGE_BATCHES
    budget = (1024 if quick else 4096) if small else max(2, int((8 if quick else 24) * 4e9 / result.multiply_adds))
    shape = files.input_shape
    blob = np.random.default_rng(0).uniform(-100, 100, (max(batches), *shape)).astype(np.float32)
    feed = plain.get_inputs()[0].name

    def passes(batch: int, count: int) -> dict[str, Callable[[], None]]:
        def ort_pass() -> None:
            for _ in range(count // batch):
                plain.run(None, {feed: blob[:batch]})

        def run_pass() -> None:
            for _ in range(count // batch):
                model.run(blob[:batch])

        def opencv_pass() -> None:
            for _ in range(count // batch):
                net.setInput(blob[:batch])
                net.forward()

        return {"ort": ort_pass, "run": run_pass, "opencv": opencv_pass}

    rows = []
    for batch in batches:
        count = batch * max(1, math.ceil(budget / batch))
        for warm in passes(batch, batch).values():
            warm()
        seconds = interleaved(passes(batch, count), repeats)
        rates = {name: count / value for name, value in seconds.items()}
        rows.append((batch, rates))
        print(
            f"  batch {batch:3d}: ORT default {rates['ort']:9,.1f}  Model.run {rates['run']:9,.1f}  "
            f"OpenCV dnn {rates['opencv']:9,.1f} img/s ({load()})"
        )
    result.ort_batch1, result.run_batch1, result.opencv_batch1 = (rows[0][1][k] for k in ("ort", "run", "opencv"))
    for key, attribute in (("ort", "ort_best"), ("run", "run_best"), ("opencv", "opencv_best")):
        batch, rates = max(rows, key=lambda row, key=key: row[1][key])
        setattr(result, attribute, (batch, rates[key]))


def end_to_end(
    files: ZooFiles, onnx_path: Path, images: Path, work: Path, result: Result, repeats: int, rss_10x: bool
) -> None:
    from decoder.caffe_io import read_binaryproto

    mean_path = work / f"{result.name}-mean.npy"
    np.save(mean_path, read_binaryproto(files.mean).reshape(files.input_shape).astype(np.float32))
    decode_out, naive_out = work / f"{result.name}-decode.jsonl", work / f"{result.name}-naive.txt"
    rss: dict[str, int] = {}

    def run_decode() -> None:
        with decode_out.open("w") as handle:
            _, rss["decode"] = run_measured(
                [*decode_command(), str(images), "--model", str(onnx_path), "--json", "-q"], stdout=handle
            )

    def run_naive() -> None:
        arguments = [images, files.prototxt, files.caffemodel, mean_path, naive_out]
        _, rss["naive"] = run_measured([sys.executable, "-c", NAIVE_LOOP, *map(str, arguments)])

    seconds = interleaved({"decode": run_decode, "naive": run_naive}, repeats)
    result.decode_seconds, result.naive_seconds = seconds["decode"], seconds["naive"]
    result.decode_rss, result.naive_rss = rss["decode"], rss["naive"]
    ours = [json.loads(line)["index"] for line in decode_out.read_text().splitlines()]
    naive = [int(v) for v in naive_out.read_text().split()]
    result.images = len(ours)
    result.agreement = float(np.mean(np.array(ours) == np.array(naive))) if len(ours) == len(naive) else 0.0
    print(
        f"  end to end, {result.images} {result.image_kind}: decode DIR {result.decode_rate:,.1f} img/s "
        f"(peak RSS {result.decode_rss / 2**20:,.0f} MB), naive OpenCV loop {result.naive_rate:,.1f} img/s "
        f"(peak RSS {result.naive_rss / 2**20:,.0f} MB) -> {result.naive_seconds / result.decode_seconds:.2f}x; "
        f"same label for {100 * result.agreement:.1f}% ({load()})"
    )
    if rss_10x:
        listing = work / f"{result.name}-10x.txt"
        names = sorted(p.name for p in images.iterdir())
        listing.write_text("".join(f"{images / n}\n" for _ in range(10) for n in names))
        seconds_10x, result.decode_rss_10x = run_measured(
            [*decode_command(), str(listing), "--model", str(onnx_path), "--json", "-q"]
        )
        print(
            f"  decode on 10x the images ({10 * len(names)}): {10 * len(names) / seconds_10x:,.1f} img/s, "
            f"peak RSS {result.decode_rss_10x / 2**20:,.0f} MB"
        )


# --------------------------------------------------------------------------- LeNet extras


def cold_start(onnx_path: Path, image: Path, runs: int) -> float:
    command = [*decode_command(), str(image), "--model", str(onnx_path)]
    subprocess.run(command, capture_output=True, check=True)  # page cache, .pyc
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sgemm_rate() -> float:
    best = 0.0
    for size in (1024, 2048):
        a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
        b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
        a @ b
        seconds = min(interleaved({"mm": lambda a=a, b=b: a @ b}, 5).values())
        best = max(best, 2 * size**3 / seconds)
    return best


# --------------------------------------------------------------------------- explore


def explore(onnx_path: Path, small: bool, repeats: int) -> None:
    """Optimization level x intra-op threads on this model at the plan's batch size, in CPU-seconds per image.

    CPU time, not wall time: on a shared machine it barely depends on the load (behind
    decoder.execution's choice of ORT_ENABLE_ALL for every model).
    """
    import onnxruntime as ort

    from decoder.runtime import Model

    batch = Model.load(onnx_path).plan.batch_size
    level = ort.GraphOptimizationLevel
    levels = {"extended": level.ORT_ENABLE_EXTENDED, "all": level.ORT_ENABLE_ALL}
    sessions = {}
    for level_name, chosen in levels.items():
        for threads in (1, None):
            options = ort.SessionOptions()
            options.graph_optimization_level = chosen
            options.log_severity_level = 3
            if threads:
                options.intra_op_num_threads = threads
            sessions[f"{level_name:8s} threads={threads or 'all'}"] = ort.InferenceSession(
                str(onnx_path), options, providers=["CPUExecutionProvider"]
            )
    first = next(iter(sessions.values())).get_inputs()[0]
    blob = np.random.default_rng(0).uniform(-100, 100, (batch, *first.shape[1:])).astype(np.float32)
    count = batch * (max(1, 2048 // batch) if small else 2)
    cpu: dict[str, list[float]] = {name: [] for name in sessions}
    for session in sessions.values():
        session.run(None, {first.name: blob})
    for _ in range(repeats):
        for name, session in sessions.items():
            start = time.process_time()
            for _ in range(count // batch):
                session.run(None, {first.name: blob})
            cpu[name].append(time.process_time() - start)
    for name, values in cpu.items():
        print(f"    batch {batch:3d} {name}: {count / statistics.median(values):9,.1f} img per CPU-second")


# --------------------------------------------------------------------------- report


def markdown(results: list[Result], machine: str) -> str:
    lines = [
        f"Measured by `python scripts/benchmark.py` ({machine}). Images/s; peak RSS of each process.",
        "",
        "| model | mult-adds/img | ORT default b1 / best | `Model.run` best | vs ORT | OpenCV dnn best | vs OpenCV "
        "| `decode DIR` | naive loop | ratio | % of `Model.run` | RSS decode / naive | convert RSS / caffemodel "
        "| cold start |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        e2e = r.decode_rate / r.run_best[1] if r.run_best[1] else 0.0
        lines.append(
            f"| {r.name} | {r.multiply_adds / 1e6:,.0f} M "
            f"| {r.ort_batch1:,.1f} / {r.ort_best[1]:,.1f} (b{r.ort_best[0]}) "
            f"| {r.run_best[1]:,.1f} (b{r.run_best[0]}) | {r.run_best[1] / r.ort_best[1]:.2f}x "
            f"| {r.opencv_best[1]:,.1f} (b{r.opencv_best[0]}) | {r.run_best[1] / r.opencv_best[1]:.2f}x "
            f"| {r.decode_rate:,.1f} | {r.naive_rate:,.1f} | {r.naive_seconds / r.decode_seconds:.2f}x "
            f"| {100 * e2e:.0f}% "
            f"| {r.decode_rss / 2**20:,.0f} / {r.naive_rss / 2**20:,.0f} MB "
            f"| {r.convert_rss / 2**20:,.0f} MB / {r.caffemodel_bytes / 2**20:,.0f} MB "
            f"({r.convert_rss / r.caffemodel_bytes:.2f}x) | {r.cold_start:.2f} s |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(LADDER), help=f"comma-separated, of: {', '.join(LADDER)}")
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats (a rough figure in minutes)")
    parser.add_argument("--images", type=int, help="photos for the end-to-end runs [400; --quick 100]")
    parser.add_argument("--repeats", type=int, help="repeats per measurement, medians [3; --quick 1]")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="the ../shared data (MNIST)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument(
        "--no-10x", action="store_true", help=f"skip decode's peak RSS on 10x the photos ({', '.join(RSS_10X_MODELS)})"
    )
    parser.add_argument("--convert-only", action="store_true", help="only the conversions' peak RSS (e.g. VGG-16's)")
    parser.add_argument("--explore", action="store_true", help="also measure the choices behind decoder.execution")
    parser.add_argument("--markdown", type=Path, help="also write the summary table to this file")
    args = parser.parse_args()
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in LADDER]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {', '.join(LADDER)}")
    repeats = args.repeats or (1 if args.quick else 3)
    photo_count = args.images or (100 if args.quick else 400)

    import cv2
    import onnxruntime as ort

    machine = f"{os.cpu_count()} CPUs, onnxruntime {ort.__version__}, OpenCV {cv2.__version__}"
    print(f"machine: {machine}; {load()} at start")
    sgemm = sgemm_rate()
    # The ceiling for every side: a convolution net cannot beat the machine's matrix-multiply rate.
    print(f"numpy float32 sgemm: {sgemm / 1e9:.0f} GFLOP/s now (every core; lower while others load the machine)")
    results = []
    with tempfile.TemporaryDirectory(prefix="decoder-bench-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        photos = None
        for name in names:
            print(f"\n{name}")
            result = Result(name)
            files = write_model(name, work / name)
            result.parameters = files.parameters
            onnx_path = work / f"{name}.onnx"
            convert(files, onnx_path, result)
            if args.convert_only:
                continue
            compute(files, onnx_path, result, args.quick, repeats)
            digits = write_digits(args.shared, work / "digits") if files.input_shape[0] == 1 else None
            if digits is not None:
                images, result.image_kind = digits[0], "MNIST digits (28x28 PNG)"
            else:
                if photos is None:
                    photos = write_photos(work / "photos", photo_count)
                count = max(40, min(photo_count, int(END_TO_END_SECONDS * result.run_best[1])))
                images = photo_subset(photos, count)
                result.image_kind = f"JPEG photos ({PHOTO_SIZE[0]}x{PHOTO_SIZE[1]})"
            rss_10x = not args.no_10x and name in RSS_10X_MODELS
            end_to_end(files, onnx_path, images, work, result, repeats, rss_10x)
            first = next(iter(sorted(images.iterdir())))
            result.cold_start = cold_start(onnx_path, first, 3 if args.quick else 7)
            print(f"  cold start, decode one image: {result.cold_start:.3f} s")
            if args.explore:
                print("  session options (compute only):")
                explore(onnx_path, result.multiply_adds < 1e8, repeats)
            results.append(result)
        for result in results:
            flops = 2 * result.multiply_adds * result.run_best[1]
            print(f"{result.name}: Model.run at {flops / 1e9:.1f} GFLOP/s = {100 * flops / sgemm:.0f}% of sgemm")
        if args.convert_only:
            return
        table = markdown(results, f"{machine}, sgemm {sgemm / 1e9:.0f} GFLOP/s, {load()} at the end")
        print("\n" + table)
        if args.markdown:
            args.markdown.write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
