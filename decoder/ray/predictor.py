"""The Ray Data actor: one :class:`~decoder.runtime.Model` per actor, one result row per input row.

:class:`ImagePredictor` is a plain callable class (it imports nothing of Ray), so Ray
Data's ``map_batches`` turns it into a pool of actors: the constructor runs once per
actor (the model is loaded once, not once per batch) and ``__call__`` takes a batch of
rows as a dict of numpy columns.

The work per batch is the local pipeline's own: paths go through
:meth:`~decoder.runtime.Model.predict_batches` (so files are read on the worker, with the
PNG fast path and DIGITS's preprocessing), image bytes are first decoded exactly as the
same file would be (:func:`source_from_bytes`). So a row's label and probabilities are
the ones `decode` gives for that file on one machine, bit for bit.

A broken image never fails the batch (that would make Ray retry it, then fail the whole
job): it becomes a row whose ``error`` holds the one-line message `decode` prints, with
``index`` -1 and NaN probabilities.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from decoder.errors import DecoderError

#: Columns every result row has (input columns other than ``bytes`` are carried through too).
RESULT_COLUMNS = ("path", "label", "index", "probability", "probabilities", "error")


class ImagePredictor:
    """A callable class for ``Dataset.map_batches``: loads the model once, classifies batches of rows.

    ``model`` is the .onnx file's bytes (what :func:`decoder.ray.model_bytes_ref` puts in
    Ray's object store, so workers on other machines need no shared filesystem), or a path
    readable on every worker. ``threads`` is ONNX Runtime's intra-op threads per actor
    (1: Ray runs one actor per CPU it reserves, so the cores are kept busy by actors);
    ``providers`` a ``--device`` name (default: ONNX Runtime's CPU provider).

    Input rows need a ``path`` column; with a ``bytes`` column (``ray.data.read_binary_files(...,
    include_paths=True)``) the images are decoded from the bytes, else read from the paths,
    or from a ``file`` column when there is one (the path made absolute on the driver, while
    results and messages keep the name as given).
    """

    def __init__(
        self,
        model: bytes | str | os.PathLike[str] | Any,
        threads: int | None = 1,
        name: str | None = None,
        providers: str | None = None,
    ) -> None:
        from decoder.runtime import Model

        if type(model).__name__ == "ObjectRef":  # the bytes in the object store (Ray passes nested refs as is)
            import ray

            model = ray.get(model)
        if isinstance(model, (bytes, bytearray, memoryview)):
            self.model = _load_from_bytes(bytes(model), threads, providers)
            self.model.path = name or "<model bytes>"
        else:
            self.model = Model.load(model, threads=threads, providers=providers)
        self.labels = self.model.labels
        self.classes = len(self.labels) or _static_classes(self.model)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Result columns (see :data:`RESULT_COLUMNS`) for one batch, in the batch's row order."""
        paths = [str(p) for p in batch["path"]]
        errors: list[str] = [""] * len(paths)
        if "bytes" in batch:
            items: list[Any] = []
            rows: list[int] = []
            for row, (path, data) in enumerate(zip(paths, batch["bytes"], strict=True)):
                try:
                    items.append(source_from_bytes(bytes(data), path))
                    rows.append(row)
                except DecoderError as exc:
                    errors[row] = str(exc)
        else:  # read from "file" (the absolute path, see paths_dataset) when given, else from "path"
            items, rows = [str(f) for f in batch.get("file", paths)], list(range(len(paths)))
        scores: dict[int, np.ndarray] = {}
        for result in self.model.predict_batches(items, top_k=1, batch_size=max(1, len(items)), workers=0):
            for position, probabilities in zip(result.positions, result.probabilities, strict=True):
                scores[rows[position]] = probabilities
            for failure in result.failures:
                row = rows[failure.position]
                # named as the input named it: not "<array N>" (bytes), not the absolute "file"
                errors[row] = str(DecoderError(failure.error.message, paths[row]))
        return self._columns(batch, paths, scores, errors)

    def _columns(
        self, batch: dict[str, np.ndarray], paths: list[str], scores: dict[int, np.ndarray], errors: list[str]
    ) -> dict[str, np.ndarray]:
        classes = next(iter(scores.values())).shape[0] if scores else self.classes
        probabilities = np.full((len(paths), classes), np.nan, dtype=np.float64)
        for row, values in scores.items():
            probabilities[row] = values
        index = np.full(len(paths), -1, dtype=np.int64)
        good = np.array(sorted(scores), dtype=np.int64)
        if len(good):
            # the local pipeline's top-1: first maximum (ties to the lower index), as decoder.decoding ranks
            index[good] = np.argsort(-probabilities[good], axis=1, kind="stable")[:, 0]
        label = np.array([_label(self.labels, i) if i >= 0 else "" for i in index.tolist()], dtype=object)
        best = np.where(index >= 0, probabilities[np.arange(len(paths)), np.maximum(index, 0)], np.nan)
        columns = {k: v for k, v in batch.items() if k not in ("bytes", "file", *RESULT_COLUMNS)}  # carried
        columns.update(
            path=np.array(paths, dtype=object),
            label=label,
            index=index,
            probability=best,
            probabilities=probabilities,
            error=np.array(errors, dtype=object),
        )
        return columns


def _static_classes(model: Any) -> int:
    """Classes in the score blob when its shape is fixed (for a model without labels whose batch all failed)."""
    for output in model.session.get_outputs():
        if output.name == model.graph.score_output:
            dims = output.shape[1:]
            if all(isinstance(d, int) for d in dims):
                return int(np.prod(dims))
    return 0


def _label(labels: Sequence[str], index: int) -> str:
    from decoder.decoding import label_of

    return label_of(index, labels)


def _load_from_bytes(data: bytes, threads: int | None, providers: str | None = None) -> Any:
    """:meth:`Model.load` of the bytes, through a private temporary file removed right after.

    Why a file: :meth:`Model.load` (and whatever options it grows) takes a path; ONNX
    Runtime has read the whole file once the session exists, so the file can go at once.
    """
    from decoder.runtime import Model

    folder = tempfile.mkdtemp(prefix="decoder-model-")
    try:
        path = Path(folder) / "model.onnx"
        path.write_bytes(data)
        # A new temporary path each time: its optimized graph would be a new cache entry each time.
        return Model.load(path, threads=threads, providers=providers, cache_graph=False)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def source_from_bytes(data: bytes, name: str) -> Any:
    """What :func:`decoder.preprocess.preprocess` should get for a file's bytes, decoded as the file would be.

    A plain 8-bit PNG takes :mod:`decoder.fast_png` (pixels identical to Pillow's, as for a
    path); everything else is opened with Pillow and handed over undecoded, so
    :func:`~decoder.preprocess.load_image` applies the same size check, decoding and DIGITS
    mode rules as for a file. Failures raise the message the file itself would give.
    """
    from PIL import Image

    from decoder import fast_png
    from decoder.preprocess import _describe as describe_exception

    if not data:
        raise DecoderError("is an empty file (0 bytes), not an image", name)
    if fast_png.available():
        pixels = fast_png.decode_png(data)
        if pixels is not None:
            return pixels
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise DecoderError(f"refused as a possible decompression bomb ({exc})", name) from None
    except Image.UnidentifiedImageError:
        raise DecoderError("not an image file Pillow can read (unknown or corrupt format)", name) from None
    except Exception as exc:  # Pillow's plugins raise many types on corrupt headers
        reason = describe_exception(exc)
        raise DecoderError(f"cannot decode the image, the file is truncated or corrupt ({reason})", name) from None
    image.filename = name  # type: ignore[attr-defined]  # load_image names its errors after it
    return image
