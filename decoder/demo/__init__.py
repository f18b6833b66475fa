"""The demo model and sample digits that ship inside the package, so a fresh install has something to run.

``lenet.onnx`` is a DIGITS-style LeNet this project trained on digits it rendered itself
(``scripts/build_demo_lenet.py`` rebuilds it byte for byte); ``samples/`` holds six of its
held-out digits named after their true class. The files live here, inside the package, so
that the wheel carries them to every install; a checkout also reaches them under the
top-level ``converted_models/`` (a link to this folder's ``files/``).

    from decoder import Model
    from decoder.demo import MODEL, SAMPLES
    Model.load(MODEL).predict(sorted(SAMPLES.glob("*.png")))
"""

from __future__ import annotations

from pathlib import Path

FILES = Path(__file__).resolve().parent / "files"
#: The converted demo LeNet (preprocessing and labels in its metadata).
MODEL = FILES / "lenet.onnx"
#: Folder of 28x28 grey PNGs ``digit_<class>.png``: dark digits on white, like DIGITS's MNIST.
SAMPLES = FILES / "samples"

__all__ = ["MODEL", "SAMPLES"]
