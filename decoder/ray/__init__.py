"""Batch prediction on a Ray cluster (the optional ``ray`` extra: ``pip install "caffe-decoder[ray]"``).

    import ray
    from decoder.ray import predict_dataset, predict_paths, runtime_env

    ray.init(runtime_env=runtime_env())  # or decoder.ray.connect("auto"); workers get this decoder

    results = predict_paths(paths, "lenet.onnx", actors=8)  # images read by the actors
    images = ray.data.read_binary_files("s3://bucket/digits/", include_paths=True)
    results = predict_dataset(images, "lenet.onnx")  # images read by Ray's read tasks
    for row in results.iter_rows():
        print(row["path"], row["label"], row["probability"], row["error"])

Each actor (:class:`ImagePredictor`, usable in any ``map_batches``) loads the model once,
from bytes put in Ray's object store by the driver, and runs the local pipeline's
preprocessing and decoding: labels and probabilities are those of `decode` on one
machine, row for row. Nothing here is imported by ``import decoder`` or a local `decode`.
See docs/ray.md.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "connect": "decoder.ray.cluster",
    "runtime_env": "decoder.ray.cluster",
    "model_bytes_ref": "decoder.ray.datasets",
    "paths_dataset": "decoder.ray.datasets",
    "predict_dataset": "decoder.ray.datasets",
    "predict_paths": "decoder.ray.datasets",
    "RESULT_COLUMNS": "decoder.ray.predictor",
    "ImagePredictor": "decoder.ray.predictor",
    "source_from_bytes": "decoder.ray.predictor",
}

__all__ = [
    "RESULT_COLUMNS",
    "ImagePredictor",
    "connect",
    "model_bytes_ref",
    "paths_dataset",
    "predict_dataset",
    "predict_paths",
    "runtime_env",
    "source_from_bytes",
]


def __getattr__(name: str) -> Any:
    # Ray loads on first use: `decode --ray` checks for it (decoder.ray.cluster) before importing it.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'decoder.ray' has no attribute {name!r}")
