"""The models a server answers for, each reachable by its file stem and, when known, its DIGITS job id."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decoder.errors import DecoderError
from decoder.job import read_job
from decoder.runtime import Model


@dataclass
class ServedModel:
    """One loaded model and the names clients use for it."""

    key: str  # the file stem: /v1/models/<key>/predict
    model: Model
    job_id: str | None = None
    name: str | None = None
    _visualizer: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def display_name(self) -> str:
        return self.name or self.key

    def ids(self) -> list[str]:
        return [self.key] + ([self.job_id] if self.job_id and self.job_id != self.key else [])

    def summary(self) -> dict[str, Any]:
        """The entry of GET /index.json, as DIGITS lists a finished model job (plus our names)."""
        return {
            "id": self.job_id or self.key,
            "name": self.display_name,
            "status": "Done",
            "key": self.key,
            "labels": len(self.model.labels),
        }

    def info(self) -> dict[str, Any]:
        """GET /models/<job_id>.json: DIGITS's model-job fields we know, and the preprocessing."""
        spec = self.model.spec
        assert spec is not None
        return {
            "id": self.job_id or self.key,
            "job id": self.job_id,
            "name": self.display_name,
            "status": "Done",
            "type": "Image Classification Model",
            "framework": "caffe",
            "image dimensions": [spec.height, spec.width, spec.channels],
            "image resize mode": spec.resize_mode,
            "labels": list(spec.labels),
            "decoder": {
                "key": self.key,
                "file": os.path.basename(self.model.path),
                "mean": spec.mean_kind,
                "channel_order": spec.channel_order,
                "scale": spec.scale,
                "score_output": self.model.graph.score_output,
            },
        }

    def visualizer(self) -> Any:
        """`decode visualize`'s :class:`~decoder.visualization.Visualizer` for this model, built once."""
        with self._lock:
            if self._visualizer is None:
                from decoder.visualization import Visualizer

                self._visualizer = Visualizer(self.model.path)
            return self._visualizer


def load_models(
    paths: Iterable[str | os.PathLike[str]],
    job_ids: Mapping[str, str] | None = None,
    providers: str | None = None,
) -> list[ServedModel]:
    """Open each .onnx with the threads its plan gives a pipeline (decoder.execution).

    A small net (LeNet class) gets one ONNX Runtime thread per call: its batches are as cheap
    as parsing the uploads, which the event loop does on the other core. A large one
    (ResNet-50 class) gets every core per call: its network is ~95% of the time, and one
    thread would leave half the machine idle.
    ``job_ids`` maps a file stem to a DIGITS job id for models whose conversion did not record one;
    ``providers`` is ``--device`` (``cpu``, ``cuda``...).
    """
    job_ids = dict(job_ids or {})
    served: list[ServedModel] = []
    for path in paths:
        model = Model.load(path, providers=providers, pipeline=True)
        if model.spec is None:
            raise DecoderError("carries no image preprocessing (its input is not an image); cannot serve it", path)
        props = dict(model.session.get_modelmeta().custom_metadata_map)
        job = read_job(props, str(path))
        key = Path(path).stem
        served.append(
            ServedModel(key, model, job_ids.pop(key, None) or (job.job_id if job else None), job.name if job else None)
        )
    if job_ids:
        raise DecoderError(f"--job-id names no served model: {', '.join(sorted(job_ids))}")
    check_unique(served)
    return served


def check_unique(models: list[ServedModel]) -> None:
    """Every stem and job id must name one model only."""
    seen: dict[str, str] = {}
    for served in models:
        for name in served.ids():
            if name in seen and seen[name] != served.model.path:
                raise DecoderError(f"two models are both reachable as {name!r}: {seen[name]} and {served.model.path}")
            seen[name] = served.model.path
