"""The prediction pipeline: workers decode, preprocess and score batches while the caller uses earlier ones.

Why a pipeline: on small images (28x28 digits) decoding the files costs a third of the
network's time, so doing them one after the other leaves a core idle. Here the input
stream is cut into batches lazily (a million paths never become a million blobs), up to
``workers + 1`` batches are in flight in a pool, and the caller receives them in input
order, so memory stays flat and output order is deterministic.

Threads or processes: both are offered (``kind``); threads are the default because they
measured faster (``scripts/benchmark.py --explore``: 9,100 vs 7,200 images/s with two
workers on 10,000 MNIST PNGs, 2 cores): the expensive parts (file reads, OpenCV's PNG
decode, Pillow's decoders, ONNX Runtime) release the GIL, so a thread can also run the
network on its own batch, while a process pool pays for pickling every blob back and
leaves the network to the caller's thread.

A broken image never stops the batch: it becomes a :class:`Failure` carrying the
:class:`~decoder.errors.DecoderError` (which names the file); callers decide whether to
stop (``--strict``) or go on.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from itertools import chain, islice
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from decoder.errors import DecoderError
from decoder.spec import PreprocessSpec

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

ImageItem = Any  # a path (str / os.PathLike), a uint8 array, or a PIL image: what decoder.preprocess accepts
PoolKind = Literal["thread", "process"]

#: Images seen before the PNG fast path switches on: importing OpenCV costs about as much
#: as opening ~250 small PNGs with Pillow, so short runs (the one-image cold start) skip it.
FAST_PATH_AFTER = 256


@dataclass(frozen=True)
class Failure:
    """An input that could not be turned into a blob."""

    position: int  # index of the item in the input stream
    name: str
    error: DecoderError


@dataclass
class PreparedBatch:
    """A batch ready for the network: the blob of the items that loaded, and those that did not."""

    start: int  # position of the batch's first item in the input stream
    blob: np.ndarray  # (len(positions), C, H, W) float32
    positions: list[int]  # stream position of each blob row
    names: list[str]  # display name of each blob row
    failures: list[Failure]
    scores: np.ndarray | None = None  # what ``infer`` returned for ``blob``, when one was given


def item_name(item: ImageItem, position: int) -> str:
    """How an item is named in results and messages: its path, or ``<array N>`` / ``<image N>``."""
    if isinstance(item, (str, os.PathLike)):
        return os.fsdecode(item)
    if isinstance(item, np.ndarray):
        return f"<array {position}>"
    return getattr(item, "filename", "") or f"<image {position}>"


def prepare_batch(
    items: list[ImageItem],
    start: int,
    spec: PreprocessSpec,
    fast: bool = True,
    fast_lock: AbstractContextManager[Any] | None = None,
) -> PreparedBatch:
    """Preprocess ``items`` (stream positions ``start``...) into one blob, collecting failures.

    ``fast`` lets plain 8-bit PNG files go through :mod:`decoder.fast_png` (same pixels as
    Pillow, ~10x cheaper to decode); every other item takes :func:`decoder.preprocess.preprocess`.
    ``fast_lock``, when given, is held around each fast-path read (see :func:`prepared_batches`).
    """
    from decoder.preprocess import grey_batch_into, preprocess, takes_grey_batches

    read_png = None
    if fast:
        from decoder import fast_png

        read_png = fast_png.read_png if fast_png.available() else None
    blob = np.empty((len(items), spec.channels, spec.height, spec.width), dtype=np.float32)
    positions: list[int] = []
    names: list[str] = []
    failures: list[Failure] = []
    # Grey PNGs already at the input size (MNIST digits) skip the per-image preprocess:
    # their pixels are gathered here and cast / mean-subtracted once for the whole batch.
    grey_shape = (spec.height, spec.width) if read_png is not None and takes_grey_batches(spec) else None
    grey = np.empty((len(items), spec.height, spec.width), dtype=np.uint8) if grey_shape else None
    grey_rows: list[int] = []  # blob row of each grey[i]
    for offset, item in enumerate(items):
        position = start + offset
        name = item_name(item, position)
        source = item
        if read_png is not None and isinstance(item, (str, os.PathLike)):
            if fast_lock is None:
                pixels = read_png(item)
            else:
                with fast_lock:
                    pixels = read_png(item)
            if pixels is not None:
                if pixels.shape == grey_shape:
                    grey[len(grey_rows)] = pixels  # type: ignore[index]
                    grey_rows.append(len(positions))
                    positions.append(position)
                    names.append(name)
                    continue
                source = pixels
        try:
            blob[len(positions)] = preprocess(source, spec)
        except DecoderError as exc:
            error = exc if exc.path else DecoderError(exc.message, name)  # every message names its image
            failures.append(Failure(position, name, error))
            continue
        positions.append(position)
        names.append(name)
    if grey_rows:
        count = len(grey_rows)
        if count == len(positions):  # the usual case: every row is a grey fast-path image
            grey_batch_into(grey[:count], spec, blob[:count])  # type: ignore[index]
        else:
            rows = np.empty((count, 1, spec.height, spec.width), dtype=np.float32)
            grey_batch_into(grey[:count], spec, rows)  # type: ignore[index]
            blob[grey_rows] = rows
    return PreparedBatch(start, blob[: len(positions)], positions, names, failures)


def prepared_batches(
    items: Iterable[ImageItem],
    spec: PreprocessSpec,
    batch_size: int = 64,
    workers: int = 1,
    kind: PoolKind = "thread",
    infer: Callable[[np.ndarray], np.ndarray] | None = None,
    infer_in_workers: bool = True,
) -> Iterator[PreparedBatch]:
    """Batches of ``items`` in input order, prepared by ``workers`` threads/processes ahead of use.

    ``infer`` (e.g. the model's forward pass) is applied to each non-empty blob and its
    result stored in ``scores``: by the worker thread itself with ``kind="thread"`` and
    ``infer_in_workers`` (small nets: several batches go through ONNX Runtime at once, one
    core each, as it releases the GIL), else by the calling thread, one batch at a time
    (large nets, whose single call uses every core; and a session cannot be sent to another
    process).

    ``workers=0`` does everything in the calling thread, when a batch is asked for; so
    does an input that fits in one batch (nothing to overlap, and no pool to start for
    the one-image cold start). At most ``workers + 1`` batches wait in memory, whatever
    the length of ``items``.
    """
    if batch_size < 1:
        raise DecoderError(f"batch size must be at least 1, not {batch_size}")
    chunks = _chunks(items, batch_size)
    first = next(chunks, None)
    if first is None:
        return
    # An input known to hold FAST_PATH_AFTER images pays for OpenCV's import anyway: its
    # first batch need not go through Pillow (~170 us a small PNG, vs ~30 us).
    long_input = len(first[1]) >= FAST_PATH_AFTER
    if workers <= 0 or len(first[1]) < batch_size:
        for start, chunk in chain([first], chunks):
            yield _scored(prepare_batch(chunk, start, spec, long_input or _fast_path_wanted(start)), infer)
        return
    chunks = chain([first], chunks)
    executor = _make_executor(kind, workers, spec)
    # One worker reads fast-path PNGs at a time; the others meanwhile run ONNX Runtime,
    # which needs no GIL. Reading small PNGs is mostly GIL-holding Python with brief
    # GIL-free calls (read, imdecode): two threads doing it at once hand the GIL back and
    # forth, and a thread coming back from a C call can wait out the 5 ms switch interval.
    # Measured on 10,000 MNIST PNGs, 2 cores: the pipeline took 0.59 s instead of 0.73 s
    # with the lock, using 1.08 instead of 1.30 CPU-seconds. Pillow's decoders (JPEG,
    # large images) release the GIL for long stretches, so they stay outside the lock:
    # locking them too halved the rate on 1500x1500 JPEGs.
    decoding = threading.Lock()
    pending: deque[Future[PreparedBatch]] = deque()
    try:
        for start, chunk in chunks:
            fast = long_input or _fast_path_wanted(start)
            if kind == "process":
                pending.append(executor.submit(_prepare_in_worker, chunk, start, fast))
            elif not infer_in_workers:
                pending.append(executor.submit(prepare_batch, chunk, start, spec, fast, decoding))
            else:
                pending.append(executor.submit(_prepare_and_score, chunk, start, spec, fast, infer, decoding))
            if len(pending) > workers:
                yield _scored(pending.popleft().result(), infer)
        while pending:
            yield _scored(pending.popleft().result(), infer)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _prepare_and_score(
    items: list[ImageItem],
    start: int,
    spec: PreprocessSpec,
    fast: bool,
    infer: Callable[[np.ndarray], np.ndarray] | None,
    decoding: threading.Lock,
) -> PreparedBatch:
    return _scored(prepare_batch(items, start, spec, fast, decoding), infer)


def _scored(batch: PreparedBatch, infer: Callable[[np.ndarray], np.ndarray] | None) -> PreparedBatch:
    if infer is not None and batch.scores is None and batch.positions:
        batch.scores = infer(batch.blob)
    return batch


def _chunks(items: Iterable[ImageItem], size: int) -> Iterator[tuple[int, list[ImageItem]]]:
    iterator = iter(items)
    start = 0
    while chunk := list(islice(iterator, size)):
        yield start, chunk
        start += len(chunk)


def _fast_path_wanted(start: int) -> bool:
    return start >= FAST_PATH_AFTER or "cv2" in sys.modules


# --------------------------------------------------------------------------- process pool

_worker_spec: PreprocessSpec | None = None


def _make_executor(kind: PoolKind, workers: int, spec: PreprocessSpec) -> Executor:
    # concurrent.futures is imported here: the one-batch cold start never needs it.
    if kind == "thread":
        from concurrent.futures import ThreadPoolExecutor

        return ThreadPoolExecutor(workers, thread_name_prefix="decoder-batch")
    if kind != "process":
        raise DecoderError(f"unknown worker kind {kind!r}; expected 'thread' or 'process'")
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork shares the already imported numpy/Pillow (spawn would re-import them in every
    # worker, ~0.3 s each); the workers only run numpy, Pillow and OpenCV's imdecode.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    context = multiprocessing.get_context(method)
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(spec,))


def _init_worker(spec: PreprocessSpec) -> None:
    global _worker_spec
    _worker_spec = spec


def _prepare_in_worker(items: list[ImageItem], start: int, fast: bool) -> PreparedBatch:
    assert _worker_spec is not None, "worker started without its spec"
    return prepare_batch(items, start, _worker_spec, fast)
