"""Where the third-party test data lives (../shared beside the repository), and MNIST readers.

The data is never copied into the repository; tests that need it skip with a reason
when it is absent.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
#: ../shared beside the checkout; DECODER_SHARED points elsewhere (e.g. from a git worktree).
SHARED = Path(os.environ.get("DECODER_SHARED") or REPO.parent / "shared").resolve()
MODELS = SHARED / "models"
MNIST = SHARED / "mnist"
DIGITS_LENET = MODELS / "digits_lenet_mnist_eagleeye"


def require(path: Path) -> Path:
    """``path``, or skip the test when ../shared (or that part of it) is absent."""
    if not path.exists():
        pytest.skip(f"needs {path} (the project's ../shared test data), which is absent")
    return path


def mnist_test_set() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 MNIST test digits (N, 28, 28) uint8, white on black as published, and labels."""
    images_path = require(MNIST / "t10k-images-idx3-ubyte.gz")
    labels_path = require(MNIST / "t10k-labels-idx1-ubyte.gz")
    images = np.frombuffer(gzip.decompress(images_path.read_bytes())[16:], np.uint8).reshape(-1, 28, 28)
    labels = np.frombuffer(gzip.decompress(labels_path.read_bytes())[8:], np.uint8)
    return images, labels
