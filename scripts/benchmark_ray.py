"""Ray's overhead against the local pipeline, and how it scales with actors (issue 14), measured in one run.

Workload: N 28x28 MNIST PNGs (DIGITS polarity; seeded random digits when ../shared/mnist
is absent) through the demo LeNet (converted_models/lenet.onnx), results consumed on
the driver as `decode --ray` consumes them.

1. Local: ``Model.predict_batches`` with the CLI's settings (2 worker threads, one ONNX
   Runtime thread per call, batch 256), model already loaded.
2. Ray: ``ray.init`` timed on its own (a cluster pays it once, not per job), then
   ``predict_paths(...).iter_batches()`` with 1 and with 2 actors; each run includes
   starting its actors and loading the model in them, as every ``decode --ray`` run does.
3. The driver's own cost per image (turning result blocks back into rows), which bounds
   how far more nodes can help a single driver.

Local and Ray runs are interleaved and medians reported, so load on a shared machine hits
both alike; the load average is printed with the results.
Run: ``python scripts/benchmark_ray.py [--images 10000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

LENET = REPO / "converted_models" / "lenet.onnx"
MNIST = REPO.parent / "shared" / "mnist" / "t10k-images-idx3-ubyte.gz"


def write_digits(folder: Path, count: int) -> list[str]:
    from PIL import Image

    if MNIST.exists():
        images = 255 - np.frombuffer(gzip.decompress(MNIST.read_bytes())[16:], np.uint8).reshape(-1, 28, 28)
    else:
        images = np.random.default_rng(0).integers(0, 256, (count, 28, 28), dtype=np.uint8)
    paths = []
    for index in range(count):
        path = folder / f"{index:05d}.png"
        Image.fromarray(images[index % len(images)]).save(path, compress_level=1)
        paths.append(str(path))
    return paths


def run_local(paths: list[str]) -> tuple[float, np.ndarray]:
    from decoder.runtime import PIPELINE_THREADS, Model

    model = Model.load(LENET, threads=PIPELINE_THREADS)
    started = time.perf_counter()
    rows = [r.probabilities for r in model.predict_batches(paths, top_k=5)]
    return time.perf_counter() - started, np.concatenate(rows)


def run_ray(paths: list[str], actors: int) -> tuple[float, np.ndarray, float, float]:
    """A whole run (actors started, model loaded in them, rows on the driver): seconds, probabilities,
    seconds until the first rows arrived, and the rate after that (images/s: the steady state)."""
    from decoder.ray.batches import predict_batches_on_ray
    from decoder.runtime import Model

    model = Model.load(LENET, threads=1)
    started = time.perf_counter()
    rows = []
    first, first_rows = 0.0, 0
    for result in predict_batches_on_ray(model, paths, top_k=5, batch_size=256, actors=actors):
        if not first:
            first, first_rows = time.perf_counter(), len(result.positions)
        rows.append(result.probabilities)
    ended = time.perf_counter()
    steady = (len(paths) - first_rows) / max(ended - first, 1e-9)
    return ended - started, np.concatenate(rows), first - started, steady


def driver_cost(paths: list[str]) -> float:
    """Seconds per image for the driver to turn result blocks into BatchResults (the CLI's side of the work)."""
    from decoder.ray.datasets import predict_paths

    dataset = predict_paths(paths, LENET, batch_size=256, actors=2).materialize()
    started = time.perf_counter()
    count = 0
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        errors = batch["error"].tolist()
        count += len([e for e in errors if not e])
        np.asarray(batch["probabilities"], dtype=np.float64)
        batch["path"].tolist()
    return (time.perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import ray

    from decoder.ray.cluster import quiet_ray_data, runtime_env

    with tempfile.TemporaryDirectory() as folder:
        paths = write_digits(Path(folder), args.images)
        started = time.perf_counter()
        quiet = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
        ray.init(address="local", num_cpus=os.cpu_count(), runtime_env=runtime_env(), **quiet)  # a fresh Ray
        init_seconds = time.perf_counter() - started
        quiet_ray_data()
        times: dict[str, list[float]] = {"local": [], "ray, 1 actor": [], "ray, 2 actors": []}
        warmups: dict[str, list[float]] = {"ray, 1 actor": [], "ray, 2 actors": []}
        steady: dict[str, list[float]] = {"ray, 1 actor": [], "ray, 2 actors": []}
        reference = None
        for _ in range(args.repeats):
            seconds, local = run_local(paths)
            times["local"].append(seconds)
            print(f"  local: {seconds:.2f} s", file=sys.stderr, flush=True)
            reference = local if reference is None else reference
            for actors in (1, 2):
                seconds, remote, warmup, rate = run_ray(paths, actors)
                name = f"ray, {actors} actor{'s' if actors > 1 else ''}"
                times[name].append(seconds)
                warmups[name].append(warmup)
                steady[name].append(rate)
                print(f"  {name}: {seconds:.2f} s, first rows after {warmup:.2f} s", file=sys.stderr, flush=True)
                assert np.array_equal(remote, reference), "Ray's probabilities differ from the local run's"
        per_image = driver_cost(paths)
        ray.shutdown()
    load = os.getloadavg()
    print(f"{args.images:,} MNIST PNGs, LeNet, {os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f}")
    print(f"ray.init (local Ray, once per cluster): {init_seconds:.1f} s")
    base = statistics.median(times["local"])
    for name, values in times.items():
        median = statistics.median(values)
        spread = f"{min(values):.2f}-{max(values):.2f}"
        print(
            f"{name:<14} {median:6.2f} s ({spread})  {args.images / median:8,.0f} images/s  {base / median:5.2f}x local"
        )
    for name in warmups:
        print(
            f"{name}: first rows after {statistics.median(warmups[name]):.1f} s (actors starting, model loading), "
            f"then {statistics.median(steady[name]):,.0f} images/s"
        )
    print(
        f"driver, result rows back into batches: {per_image * 1e6:.1f} us/image ({1 / per_image:,.0f} images/s ceiling)"
    )
    print("probabilities identical to the local run's in every Ray run")


if __name__ == "__main__":
    main()
