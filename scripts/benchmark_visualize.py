"""How long `decode visualize` takes, by default and with ``--all``, on a ResNet-50-sized net.

The net is the benchmark ladder's ResNet-50 (``scripts/model_zoo.py``: Kaiming He's deploy
net, 228 Caffe layers, 224x224 colour input, seeded He-normal weights), converted with
`decode convert`; the image is a seeded random 224x224 picture. Each mode writes a fresh
folder through :func:`decoder.visualization.write_report` (model opening included), the
two modes interleaved ``--repeat`` times in this one process so load on a shared machine
hits both alike; the figures are medians. CPU seconds (every thread of this process) are
printed beside wall seconds: on a busy machine they are the steadier figure.

Run: ``python scripts/benchmark_visualize.py [--model OTHER.onnx --image IMG] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
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


def ladder_resnet50(folder: Path) -> Path:
    """The ladder's ResNet-50 written as Caffe files and converted; returns the .onnx."""
    from decoder.conversion import convert
    from decoder.sources import open_sources
    from scripts.model_zoo import write_model

    files = write_model("resnet50", folder / "resnet50", seed=0)
    output = folder / "resnet50.onnx"
    with open_sources(files.folder) as sources:
        convert(sources, output)
    return output


def random_image(path: Path, size: int = 224) -> Path:
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_once(model: Path, image: Path, folder: Path, draw_all: bool) -> dict[str, float]:
    from decoder.visualization import write_report

    wall, cpu = time.perf_counter(), time.process_time()
    report = write_report(model, image, folder, draw_all=draw_all)
    return {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "pictures": len(report.pictures),
        "megabytes": folder_bytes(folder) / 1e6,
        "layers": len(report.stats) - 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="A converted .onnx (default: the ladder's ResNet-50).")
    parser.add_argument("--image", type=Path, help="The image to visualize (default: seeded random 224x224).")
    parser.add_argument("--repeat", type=int, default=3, help="Interleaved runs of each mode (medians).")
    args = parser.parse_args()

    import matplotlib  # noqa: F401  (imported once, before any timing, so neither mode pays for it)

    with tempfile.TemporaryDirectory(prefix="decoder-bench-viz-") as work:
        root = Path(work)
        model = args.model or ladder_resnet50(root)
        image = args.image or random_image(root / "image.png")
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for attempt in range(args.repeat):
            for draw_all in (False, True):
                runs[draw_all].append(run_once(model, image, root / f"out-{draw_all}-{attempt}", draw_all))
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        name = model.name if args.model else "ladder ResNet-50 (seed 0)"
        print(f"model: {name}, {runs[False][0]['layers']:.0f} layer tops")
        print(f"median of {args.repeat} interleaved runs; load average {load:.1f} on {os.cpu_count()} cores")
        print(f"{'mode':<10} {'wall s':>8} {'cpu s':>8} {'pictures':>9} {'MB':>7}")
        medians = {}
        for draw_all, name in ((False, "default"), (True, "--all")):
            m = {
                key: statistics.median(r[key] for r in runs[draw_all])
                for key in ("wall", "cpu", "pictures", "megabytes")
            }
            medians[draw_all] = m
            print(f"{name:<10} {m['wall']:8.1f} {m['cpu']:8.1f} {m['pictures']:9.0f} {m['megabytes']:7.1f}")
        ratio_wall = medians[True]["wall"] / medians[False]["wall"]
        ratio_cpu = medians[True]["cpu"] / medians[False]["cpu"]
        print(f"default is {ratio_wall:.1f}x faster than --all (wall), {ratio_cpu:.1f}x (cpu)")


if __name__ == "__main__":
    main()
