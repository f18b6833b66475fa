"""Ray Datasets of predictions: from paths, or from a Ray Dataset of image bytes.

How the work is spread: the rows (paths, or paths with their bytes) are cut into blocks
of ``batch_size`` rows and ``map_batches`` hands each block to one of a pool of
:class:`~decoder.ray.predictor.ImagePredictor` actors, each holding the model. The .onnx
file is read once on the driver (which also checks it, so a bad model fails here with one
line rather than in every actor) and put in Ray's object store: actors on other machines
fetch its bytes from there and need no shared filesystem for the model. Images are read
where the actor runs: from the paths (which every node must then be able to open: a
shared filesystem) or, for ``read_binary_files`` datasets, by Ray's read tasks from any
filesystem Ray reads (local, NFS, ``s3://``, ``gs://``...).

What Ray guarantees when a worker dies: Ray Data starts the map actors with
``max_restarts=-1`` and ``max_task_retries=-1`` (``ActorPoolMapOperator`` applies these
defaults), so a killed actor is restarted (loading the model again) and the batch it held
is run again. A batch's output only counts once its task has finished, so the retried
batch's rows replace the lost attempt's: every input row gives exactly one result row,
keyed by its ``path`` (and ``position`` for :func:`paths_dataset` inputs). Execution is
streaming and out of order unless ``DataContext.execution_options.preserve_order`` is set
(the CLI sets it, so its output follows the input order).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import ray

from decoder.ray.predictor import ImagePredictor

if TYPE_CHECKING:
    from ray.data import Dataset

    from decoder.runtime import Model


def load_model(model: str | os.PathLike[str] | Model) -> Model:
    """The model, opened on the driver: checks the file and gives labels and the default batch size."""
    from decoder.runtime import Model

    return model if isinstance(model, Model) else Model.load(model)


def model_bytes_ref(model: str | os.PathLike[str] | Model) -> ray.ObjectRef:
    """The .onnx file's bytes in Ray's object store, for :class:`ImagePredictor` on any node."""
    path = model.path if not isinstance(model, (str, os.PathLike)) else model
    return ray.put(Path(path).read_bytes())


def paths_dataset(paths: Sequence[str | os.PathLike[str]], rows_per_block: int = 256) -> Dataset:
    """A Dataset of ``path``, ``file`` (absolute) and ``position`` (input order) rows, in blocks of ~``rows_per_block``.

    Blocks of one batch each let every actor take work from the start (a single block of a
    million rows would go to one actor). ``from_items`` builds the blocks and their
    metadata on the driver; ``from_arrow`` would run one remote task per block for its
    metadata before the job starts.
    """
    # Actors run in another working directory (on another machine): a relative path is made
    # absolute here, as the driver sees it, and read from that "file"; results keep "path" as given.
    rows = [
        {"path": os.fsdecode(path), "file": os.path.abspath(path), "position": position}
        for position, path in enumerate(paths)
    ]
    if not rows:
        raise ValueError("no paths to classify")
    return ray.data.from_items(rows, override_num_blocks=-(-len(rows) // rows_per_block))


def predict_dataset(
    dataset: Dataset,
    model: str | os.PathLike[str] | Model,
    *,
    batch_size: int | None = None,
    actors: int | tuple[int, int] | None = None,
    threads: int = 1,
    providers: str | None = None,
) -> Dataset:
    """Predictions for every row of ``dataset`` (a ``path`` column, and optionally ``bytes``).

    ``dataset`` is typically ``ray.data.read_binary_files(paths, include_paths=True)`` (images
    read by Ray's read tasks on the workers) or :func:`paths_dataset` (images read by the
    actors from the paths). The result has a row per input row: ``path``, ``label``,
    ``index`` (-1 for an unreadable image), ``probability``, ``probabilities`` (every class,
    float64, as the local run computes them), ``error`` (empty, or the one-line message)
    and every other input column but ``bytes``.

    ``batch_size``: images per ONNX Runtime call (default: the model's, as locally).
    ``actors``: how many model replicas: an int for a fixed pool, ``(min, max)`` for an
    autoscaling one; default: from one up to one per CPU of the cluster but one (read
    tasks need a CPU too: a fixed pool as large as the cluster waits forever for its
    input). Each actor reserves one CPU and runs ONNX Runtime with ``threads`` threads, on
    ``providers`` (a ``--device`` name; GPUs are not reserved from Ray: pass your own
    ``map_batches`` with ``num_gpus`` for that).
    """
    loaded = load_model(model)
    batch_size = batch_size or loaded.default_batch_size()
    if actors is None:
        # One CPU stays free for Ray's read tasks: actors holding every CPU would starve the
        # read_binary_files tasks that feed them, and the job would wait forever.
        actors = (1, max(1, int(ray.cluster_resources().get("CPU", 1)) - 1))
    pool = (
        ray.data.ActorPoolStrategy(size=actors)
        if isinstance(actors, int)
        else ray.data.ActorPoolStrategy(min_size=actors[0], max_size=actors[1])
    )
    return dataset.map_batches(
        ImagePredictor,
        batch_size=batch_size,
        batch_format="numpy",
        compute=pool,
        num_cpus=1,
        fn_constructor_kwargs={
            "model": model_bytes_ref(loaded),
            "threads": threads,
            "name": loaded.path,
            "providers": providers,
        },
    )


def predict_paths(
    paths: Sequence[str | os.PathLike[str]],
    model: str | os.PathLike[str] | Model,
    *,
    batch_size: int | None = None,
    actors: int | tuple[int, int] | None = None,
    threads: int = 1,
    providers: str | None = None,
) -> Dataset:
    """Predictions for image files, read by the actors (every node must see the paths).

    Same columns as :func:`predict_dataset`, plus ``position`` (the path's index in
    ``paths``). ``actors`` defaults to a fixed pool of one per cluster CPU: nothing else
    in this pipeline needs a CPU.
    """
    loaded = load_model(model)
    batch_size = batch_size or loaded.default_batch_size()
    if actors is None:
        actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
    return predict_dataset(
        paths_dataset(paths, batch_size),
        loaded,
        batch_size=batch_size,
        actors=actors,
        threads=threads,
        providers=providers,
    )
