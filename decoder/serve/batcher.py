"""Coalescing concurrent requests into one ONNX Runtime call per batch, off the event loop.

Each model has one :class:`Batcher`. A request puts its images in the queue and awaits one
future per image. A consumer task takes everything queued (up to ``max_batch``); when other
requests are still being received (``arriving``), it waits up to ``max_wait`` for them to
join, so requests that arrive together share one call while a lone client never waits.
The batch is decoded, preprocessed and run in a worker thread (all three release the GIL),
so the event loop keeps parsing requests meanwhile, and the next batch fills up during the
current call. Errors are per image: an unreadable upload gets its own DecoderError and the
rest of the batch is answered; if the model itself rejects a batch, its images are retried
one by one so only the culprit fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from decoder.errors import DecoderError
from decoder.runtime import Model
from decoder.serve.images import Source, blob_of, source_name
from decoder.serve.metrics import Metrics

Outcome = np.ndarray | DecoderError  # one image's probabilities (K,), or why it failed


@dataclass
class _Pending:
    source: Source
    future: asyncio.Future[Outcome]


class Batcher:
    """The queue in front of one model; :meth:`classify` is all a request handler calls."""

    def __init__(
        self,
        model: Model,
        executor: Executor,
        metrics: Metrics,
        max_batch: int = 64,
        max_wait: float = 0.002,
        workers: int = 1,
        arriving: Callable[[], int] = lambda: 0,
    ) -> None:
        self.model = model
        self.executor = executor
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.workers = workers
        self.arriving = arriving
        self.calls = 0  # ONNX Runtime calls made (tests check that batching happened)
        self._queue: deque[_Pending] = deque()
        self._ready: asyncio.Event | None = None
        self._consumers: list[asyncio.Task[None]] = []

    async def classify(self, sources: list[Source]) -> list[Outcome]:
        """Probabilities (or the error) for each source, in order; shares model calls with concurrent requests."""
        if not sources:
            return []
        loop = asyncio.get_running_loop()
        self._start(loop)
        futures = []
        for source in sources:
            future: asyncio.Future[Outcome] = loop.create_future()
            self._queue.append(_Pending(source, future))
            futures.append(future)
        assert self._ready is not None
        self._ready.set()
        return list(await asyncio.gather(*futures))

    async def close(self) -> None:
        """Stop the consumers; images still queued are cancelled."""
        for task in self._consumers:
            task.cancel()
        for task in self._consumers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._consumers.clear()
        while self._queue:
            self._queue.popleft().future.cancel()

    # ------------------------------------------------------------------ internals

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._consumers and self._consumers[0].get_loop() is loop and not self._consumers[0].done():
            return
        self._ready = asyncio.Event()
        self._consumers = [loop.create_task(self._consume()) for _ in range(self.workers)]

    def _take(self, limit: int) -> list[_Pending]:
        taken = []
        while self._queue and len(taken) < limit:
            pending = self._queue.popleft()
            if not pending.future.done():  # a client that went away cancelled its future
                taken.append(pending)
        return taken

    async def _consume(self) -> None:
        assert self._ready is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            batch = self._take(self.max_batch)
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch and self.arriving() > 0 and (left := deadline - loop.time()) > 0:
                self._ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), left)
                batch += self._take(self.max_batch - len(batch))
            if not batch:
                continue
            try:
                outcomes = await loop.run_in_executor(self.executor, self._run, [p.source for p in batch])
            except Exception as exc:  # the executor itself failed (shut down): answer, never hang
                outcomes = [DecoderError(f"the server could not run the model ({exc})")] * len(batch)
            for pending, outcome in zip(batch, outcomes, strict=True):
                if not pending.future.done():
                    pending.future.set_result(outcome)

    def _run(self, sources: list[Source]) -> list[Outcome]:
        """In a worker thread: decode and preprocess each image, then one model call for the good ones."""
        spec = self.model.spec
        assert spec is not None
        outcomes: list[Outcome | None] = [None] * len(sources)
        blobs = np.empty((len(sources), spec.channels, spec.height, spec.width), dtype=np.float32)
        good: list[int] = []
        for index, source in enumerate(sources):
            try:
                blobs[len(good)] = blob_of(source, spec)
                good.append(index)
            except DecoderError as exc:
                outcomes[index] = exc
            except Exception as exc:  # a decoder library failing in a way we did not foresee
                outcomes[index] = DecoderError(
                    f"cannot read the image ({type(exc).__name__}: {exc})", source_name(source)
                )
        if good:
            for index, row in zip(good, self._probabilities(blobs[: len(good)]), strict=True):
                outcomes[index] = row
        self.metrics.batch(len(sources), len(sources) - len(good))
        return [o for o in outcomes if o is not None]

    def _probabilities(self, blob: np.ndarray) -> list[Outcome]:
        self.calls += 1
        try:
            return list(self.model.probabilities(blob))
        except DecoderError as exc:
            if len(blob) == 1:
                return [exc]
        outcomes: list[Outcome] = []
        for one in blob:  # find the image the model rejects; answer the others
            try:
                outcomes.append(self.model.probabilities(one[None])[0])
            except DecoderError as exc:
                outcomes.append(exc)
        return outcomes
