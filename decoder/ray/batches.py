"""The bridge between Ray and ``decode``'s writers: result rows back into :class:`~decoder.runtime.BatchResult` objects.

``decode IMAGES --ray`` expands its inputs, loads the model and writes results exactly as
a local run does; only where the batches are computed changes. This module runs
:func:`~decoder.ray.datasets.predict_paths` with the input order preserved and turns each
block of result rows into the :class:`BatchResult` that :meth:`Model.predict_batches`
would have yielded (names, input positions, probabilities, failures), so the CSV/JSON
lines, the broken-image lines, ``--strict``, the progress bar and the accuracy summary
are the local code, unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from decoder.errors import DecoderError

if TYPE_CHECKING:
    from decoder.runtime import BatchResult, Model


def predict_batches_on_ray(
    model: Model,
    paths: Sequence[str],
    top_k: int = 5,
    batch_size: int | None = None,
    actors: int | None = None,
    threads: int = 1,
    address: str = "local",
    providers: str | None = None,
) -> Iterator[BatchResult]:
    """Like :meth:`Model.predict_batches` for paths, computed by actors on a Ray cluster, in input order."""
    from decoder.batching import Failure
    from decoder.ray.cluster import connect
    from decoder.ray.datasets import predict_paths
    from decoder.runtime import BatchResult

    connect(address)
    dataset = predict_paths(
        paths, model, batch_size=batch_size, actors=actors or None, threads=threads, providers=providers
    )
    dataset.context.execution_options.preserve_order = True  # this run's rows in input order, as locally
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        positions = batch["position"].tolist()
        names = batch["path"].tolist()
        errors = batch["error"].tolist()
        good = [row for row, error in enumerate(errors) if not error]
        failures = [Failure(positions[row], names[row], DecoderError(errors[row])) for row, e in enumerate(errors) if e]
        yield BatchResult(
            [names[row] for row in good],
            [positions[row] for row in good],
            np.asarray(batch["probabilities"], dtype=np.float64)[good],
            failures,
            model.labels,
            top_k,
        )
