"""Performance figures for the README (issue 5), all measured in one run on this machine.

1. Compute: the converted DIGITS LeNet in ONNX Runtime (our session options) against the
   same Caffe files in OpenCV 4 dnn (``readNetFromCaffe``), at batch 1 and at each one's
   best batch, on the same preprocessed MNIST blob.
2. End to end: ``decode DIR --model lenet.onnx --json`` over 10,000 MNIST PNGs (28x28, DIGITS
   polarity) against a naive loop (cv2.imread, mean subtraction, one OpenCV dnn forward per
   image), both as fresh processes, start-up included; accuracy of both.
3. Cold start: ``decode one.png --model lenet.onnx``, median of several runs.
4. The machine's sgemm rate (numpy float32 matmul) and the fraction of it LeNet reaches at
   4.59 MFLOP per image.

``--explore`` adds the measurements behind the defaults: ONNX Runtime session options,
batch size, and the preprocessing pool (threads or processes, how many).

The machine may be shared: every comparison interleaves its two sides and reports
medians, so load hits both alike; the load average is printed with the results.
Run: ``python scripts/benchmark.py [--shared ../shared] [--explore]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

LENET_FLOP = 4.59e6  # conv1 0.58 + conv2 3.2 + ip1 0.8 + ip2 0.01 MFLOP (2 per multiply-add)
BATCHES = (1, 8, 16, 32, 64, 128, 256, 512)

NAIVE_LOOP = """
import sys, glob, os
import numpy as np, cv2
folder, prototxt, caffemodel, mean_path, out = sys.argv[1:]
net = cv2.dnn.readNetFromCaffe(prototxt, caffemodel)
mean = np.load(mean_path)
labels = []
for path in sorted(glob.glob(os.path.join(folder, "*.png"))):
    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE).astype(np.float32) - mean
    net.setInput(image[np.newaxis, np.newaxis])
    labels.append(int(net.forward().argmax()))
open(out, "w").write("\\n".join(map(str, labels)))
"""


def median_time(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, the functions taking turns (so load hits all alike)."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


# --------------------------------------------------------------------------- setup


def prepare(shared: Path, work: Path) -> dict[str, Path | np.ndarray]:
    """Convert the DIGITS LeNet, write the 10,000 MNIST PNGs and the blob OpenCV and ORT share."""
    from PIL import Image

    from decoder.caffe_io import read_binaryproto
    from decoder.cli.main import main

    model_dir = shared / "models" / "digits_lenet_mnist_eagleeye"
    onnx_path = work / "lenet.onnx"
    if main(["convert", str(model_dir / "digits_model.tar.gz"), "-o", str(onnx_path)]) != 0:
        raise SystemExit("conversion failed")
    images = np.frombuffer(
        gzip.decompress((shared / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes())[16:], np.uint8
    )
    images = 255 - images.reshape(-1, 28, 28)  # DIGITS polarity: dark digits on white
    truth = np.frombuffer(gzip.decompress((shared / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())[8:], np.uint8)
    digits = work / "digits"
    digits.mkdir(exist_ok=True)
    for index, image in enumerate(images):
        Image.fromarray(image).save(digits / f"{index:05d}.png")
    mean = read_binaryproto(model_dir / "mean.binaryproto").reshape(28, 28).astype(np.float32)
    np.save(work / "mean.npy", mean)
    blob = (images.astype(np.float32) - mean)[:, np.newaxis]
    return {
        "onnx": onnx_path,
        "digits": digits,
        "one": digits / "00000.png",
        "prototxt": model_dir / "deploy.prototxt",
        "caffemodel": model_dir / "snapshot_iter_21120.caffemodel",
        "mean": work / "mean.npy",
        "blob": blob,
        "truth": truth,
    }


# --------------------------------------------------------------------------- 1. compute


def compute(files: dict, repeats: int) -> dict[str, object]:
    import cv2

    from decoder.runtime import Model

    # One caller here, so ONNX Runtime gets every core (OpenCV dnn uses them all too); the
    # pipeline's default of one thread per call reaches the same rate with concurrent calls.
    model = Model.load(files["onnx"], threads=os.cpu_count())
    net = cv2.dnn.readNetFromCaffe(str(files["prototxt"]), str(files["caffemodel"]))
    blob: np.ndarray = files["blob"]

    def ort_pass(batch: int, count: int) -> Callable[[], None]:
        def run() -> None:
            for start in range(0, count, batch):
                model.run(blob[start : start + batch], [model.graph.score_output])

        return run

    def opencv_pass(batch: int, count: int) -> Callable[[], None]:
        def run() -> None:
            for start in range(0, count, batch):
                net.setInput(blob[start : start + batch])
                net.forward()

        return run

    rows = []
    for batch in BATCHES:
        count = max(512, 8 * batch) if batch > 1 else 512
        ort_pass(batch, batch)()  # warm-up: arenas and kernels
        opencv_pass(batch, batch)()
        seconds = interleaved({"ort": ort_pass(batch, count), "opencv": opencv_pass(batch, count)}, repeats)
        rows.append((batch, count / seconds["ort"], count / seconds["opencv"]))
        print(f"  batch {batch:4d}: ONNX Runtime {rows[-1][1]:9,.0f} img/s   OpenCV dnn {rows[-1][2]:9,.0f} img/s")
    best_ort = max(rows, key=lambda r: r[1])
    best_cv = max(rows, key=lambda r: r[2])
    return {"rows": rows, "best_ort": best_ort, "best_cv": best_cv}


# --------------------------------------------------------------------------- 2. end to end


def decode_command() -> list[str]:
    """The installed `decode` entry point beside this interpreter, else `python -m decoder.cli.main`."""
    script = Path(sys.executable).with_name("decode")
    return [str(script)] if script.exists() else [sys.executable, "-m", "decoder.cli.main"]


def end_to_end(files: dict, work: Path, repeats: int) -> dict[str, object]:
    decode_out = work / "decode.jsonl"
    naive_out = work / "naive.txt"

    def run_decode() -> None:
        with decode_out.open("w") as handle:
            subprocess.run(
                [*decode_command(), str(files["digits"]), "--model", str(files["onnx"]), "--json"],
                stdout=handle,
                stderr=subprocess.DEVNULL,
                check=True,
            )

    def run_naive() -> None:
        arguments = [files["digits"], files["prototxt"], files["caffemodel"], files["mean"], naive_out]
        subprocess.run([sys.executable, "-c", NAIVE_LOOP, *map(str, arguments)], check=True)

    seconds = interleaved({"decode": run_decode, "naive": run_naive}, repeats)
    truth: np.ndarray = files["truth"]
    ours = np.array([json.loads(line)["index"] for line in decode_out.read_text().splitlines()])
    naive = np.array([int(v) for v in naive_out.read_text().split()])
    return {
        "seconds": seconds,
        "accuracy_decode": float(np.mean(ours == truth)),
        "accuracy_naive": float(np.mean(naive == truth)),
        "agreement": float(np.mean(ours == naive)),
        "count": len(ours),
    }


# --------------------------------------------------------------------------- 3. cold start


def cold_start(files: dict, work: Path, runs: int) -> dict[str, float]:
    command = [*decode_command(), str(files["one"]), "--model", str(files["onnx"])]
    environments = {"as configured": dict(os.environ)}
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        # This environment never writes .pyc files, so every start recompiles our modules;
        # an installed package has them. Measure both.
        warm = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        warm["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        environments["with bytecode cache"] = warm
    results = {}
    for name, environment in environments.items():
        subprocess.run(command, env=environment, capture_output=True, check=True)  # warm the page cache / pyc
        results[name] = median_time(
            lambda environment=environment: subprocess.run(command, env=environment, capture_output=True, check=True),
            runs,
        )
    results["python -c pass"] = median_time(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), runs)
    results["python -c 'import numpy, onnxruntime'"] = median_time(
        lambda: subprocess.run([sys.executable, "-c", "import numpy, onnxruntime"], check=True), runs
    )
    return results


# --------------------------------------------------------------------------- 4. sgemm


def sgemm_rate(repeats: int) -> tuple[float, int]:
    best = (0.0, 0)
    for size in (512, 1024, 2048):
        a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
        b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
        a @ b
        seconds = min(median_time(lambda a=a, b=b: a @ b, repeats) for _ in range(2))
        best = max(best, (2 * size**3 / seconds, size))
    return best


# --------------------------------------------------------------------------- explore


def explore(files: dict, repeats: int) -> None:
    import onnxruntime as ort

    blob: np.ndarray = files["blob"]
    print("\nONNX Runtime session options (img/s, compute only, median):")
    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    sessions = {}
    for level_name, level in levels.items():
        for threads in (1, 2):
            for spinning in (True, False):
                options = ort.SessionOptions()
                options.graph_optimization_level = level
                options.intra_op_num_threads = threads
                options.log_severity_level = 3
                if not spinning:
                    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                name = f"{level_name:8s} threads={threads} spin={'on ' if spinning else 'off'}"
                sessions[name] = ort.InferenceSession(str(files["onnx"]), options, providers=["CPUExecutionProvider"])
    feed_name = next(iter(sessions.values())).get_inputs()[0].name
    for batch in (64, 256):
        count = 2048

        def runner(session: Any, batch: int = batch, count: int = count) -> Callable[[], None]:
            return lambda: [session.run(None, {feed_name: blob[s : s + batch]}) for s in range(0, count, batch)]

        seconds = interleaved({name: runner(session) for name, session in sessions.items()}, repeats)
        for name, value in seconds.items():
            print(f"  batch {batch:3d}  {name}: {count / value:9,.0f}")

    print("\n`decode DIR --json` in-process (no interpreter start-up), 10,000 PNGs (img/s, median):")
    from decoder.cli.main import main as decode_main

    def cli(*options: str) -> Callable[[], None]:
        def run() -> None:
            saved = sys.stdout
            with open(os.devnull, "w") as sink:
                sys.stdout = sink
                try:
                    decode_main([str(files["digits"]), "--model", str(files["onnx"]), "--json", "-q", *options])
                finally:
                    sys.stdout = saved

        return run

    choices = {
        "workers=0 (no pool)": cli("--workers", "0"),
        "workers=1 threads": cli("--workers", "1"),
        "workers=2 threads, ORT threads=1, batch 256 (default)": cli("--workers", "2"),
        "workers=3 threads": cli("--workers", "3"),
        "workers=4 threads": cli("--workers", "4"),
        "workers=1 processes": cli("--workers", "1", "--pool", "process"),
        "workers=2 processes": cli("--workers", "2", "--pool", "process"),
        "workers=2, ORT threads=2": cli("--workers", "2", "--threads", "2"),
        "workers=3, ORT threads=2": cli("--workers", "3", "--threads", "2"),
        "workers=2, batch 32": cli("--batch-size", "32"),
        "workers=2, batch 64": cli("--batch-size", "64"),
        "workers=2, batch 128": cli("--batch-size", "128"),
    }
    for name, value in interleaved(choices, max(3, repeats // 2)).items():
        print(f"  {name:54s} {10_000 / value:9,.0f}")


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="the ../shared data folder")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per measurement (medians)")
    parser.add_argument("--explore", action="store_true", help="also measure the choices behind the defaults")
    args = parser.parse_args()
    if not (args.shared / "models" / "digits_lenet_mnist_eagleeye").is_dir():
        raise SystemExit(f"needs the DIGITS LeNet and MNIST under {args.shared}")
    with tempfile.TemporaryDirectory(prefix="decoder-bench-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        import cv2
        import onnxruntime as ort

        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
        print(f"onnxruntime {ort.__version__}, OpenCV {cv2.__version__}, numpy {np.__version__}")
        files = prepare(args.shared, work)

        print("\n1. compute throughput, same preprocessed blob (median of interleaved runs)")
        result = compute(files, args.repeats)
        b1 = result["rows"][0]
        best_ort, best_cv = result["best_ort"], result["best_cv"]
        print(f"  batch 1: ONNX Runtime {b1[1]:,.0f} img/s vs OpenCV {b1[2]:,.0f} img/s -> {b1[1] / b1[2]:.2f}x")
        print(
            f"  best:    ONNX Runtime {best_ort[1]:,.0f} img/s (batch {best_ort[0]}) vs OpenCV {best_cv[2]:,.0f} img/s "
            f"(batch {best_cv[0]}) -> {best_ort[1] / best_cv[2]:.2f}x"
        )

        print("\n2. end to end, 10,000 MNIST PNGs, fresh processes (start-up included)")
        e2e = end_to_end(files, work, max(3, args.repeats // 2))
        seconds = e2e["seconds"]
        count = e2e["count"]
        print(
            f"  decode DIR --json: {seconds['decode']:.2f} s ({count / seconds['decode']:,.0f} img/s), "
            f"accuracy {100 * e2e['accuracy_decode']:.2f}%"
        )
        print(
            f"  naive OpenCV loop: {seconds['naive']:.2f} s ({count / seconds['naive']:,.0f} img/s), "
            f"accuracy {100 * e2e['accuracy_naive']:.2f}%"
        )
        print(f"  -> {seconds['naive'] / seconds['decode']:.2f}x; labels agree on {100 * e2e['agreement']:.2f}%")

        print("\n3. cold start, `decode one.png --model lenet.onnx` (median)")
        for name, value in cold_start(files, work, max(7, args.repeats)).items():
            print(f"  {name}: {value:.3f} s")

        print("\n4. sgemm")
        rate, size = sgemm_rate(args.repeats)
        reached = best_ort[1] * LENET_FLOP
        print(f"  numpy float32 matmul ({size}x{size}): {rate / 1e9:.1f} GFLOP/s")
        print(
            f"  LeNet at {best_ort[1]:,.0f} img/s x 4.59 MFLOP = {reached / 1e9:.1f} GFLOP/s = "
            f"{100 * reached / rate:.0f}% of sgemm"
        )
        if args.explore:
            explore(files, args.repeats)
        print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
