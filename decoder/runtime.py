"""Running a converted .onnx with its own preprocessing: :class:`Model`.

The prediction path imports onnxruntime, numpy and Pillow only (not the ``onnx``
package): the metadata written by ``decode convert`` is read through ONNX Runtime's
own model-metadata API, so `decode image.png --model m.onnx` starts quickly.

Batches: :meth:`Model.predict_batches` (and :meth:`~Model.predict_iter` /
:meth:`~Model.predict` on top of it) streams any iterable of images through
:mod:`decoder.batching`, one ONNX Runtime call per batch, with decoding and inference
overlapped in worker threads; :meth:`Model.run` takes blobs that are already preprocessed.

Heads: labels are only given for a classifier (one score vector per image, see
:mod:`decoder.heads`); a detector or any other head is refused by :meth:`Model.predict`
with one line naming its outputs, and :meth:`Model.run` (``decode run``) returns its arrays.
A net converted with a fixed batch (a layer mixes the images of a batch) is fed exactly
that many images per call by :meth:`Model.run`, the last call padded and the padding dropped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from decoder import execution, wire
from decoder.cost import ModelCost
from decoder.decoding import Prediction, decode, to_probabilities
from decoder.errors import DecoderError
from decoder.heads import CLASSIFIER, describe_outputs, head_kind, per_image_shape
from decoder.spec import GRAPH_KEY, SPEC_KEY, PreprocessSpec, read_graph_metadata

if TYPE_CHECKING:
    from decoder.batching import Failure, PoolKind, PreparedBatch

ImageItem = str | os.PathLike[str] | np.ndarray

#: Most images per ONNX Runtime call (see :mod:`decoder.execution` for how a model's batch is sized).
MAX_BATCH_SIZE = execution.MAX_BATCH_SIZE
#: Pipeline worker threads of small nets (LeNet class); large nets decode ahead with one.
DEFAULT_WORKERS = execution.SMALL_WORKERS
#: ONNX Runtime intra-op threads per call when small nets run in the worker pipeline.
PIPELINE_THREADS = 1


@dataclass(frozen=True)
class GraphInfo:
    """What conversion recorded about the graph: the score blob and each layer's tops."""

    outputs: tuple[str, ...]
    score_output: str
    score_is_softmax: bool
    layers: tuple[dict[str, Any], ...]
    #: "classifier" (one score vector per image) or "other"; see :mod:`decoder.heads`.
    kind: str = CLASSIFIER
    kind_reason: str = ""
    #: The batch every call must have (a layer mixes images); None for a dynamic batch.
    fixed_batch: int | None = None

    @classmethod
    def from_metadata(
        cls,
        props: dict[str, str],
        output_names: list[str],
        path: str | None = None,
        output_shapes: dict[str, list[Any]] | None = None,
    ) -> GraphInfo:
        """From the checked ``decoder.graph`` entry; a forged or damaged one is a DecoderError naming ``path``.

        Files written before heads were told apart carry no ``kind``: it is worked out here
        from the score output's declared shape and the layer that writes it.
        """
        info, recorded = cls._read(props, output_names, path)
        if recorded:
            return info
        producer = {top: layer["type"] for layer in info.layers for top in layer["tops"]}
        shape = (output_shapes or {}).get(info.score_output, [])
        kind, reason = head_kind(per_image_shape(shape, info.fixed_batch), producer.get(info.score_output, ""))
        if producer.get(info.score_output) == "ArgMax":
            reason += " (converted by an older version: convert the Caffe model again to read ArgMax's input)"
        return replace(info, kind=kind, kind_reason=reason)

    @classmethod
    def _read(cls, props: dict[str, str], output_names: list[str], path: str | None) -> tuple[GraphInfo, bool]:
        """The entry as written, and whether it records the head's kind (files since heads were told apart)."""
        if GRAPH_KEY in props:
            body = read_graph_metadata(props, path)
            if body["score_output"] not in output_names:
                raise DecoderError(
                    f"corrupt decoder metadata in the .onnx file ({GRAPH_KEY}: score output "
                    f"{body['score_output']!r} is not one of the graph's outputs {output_names})",
                    path,
                )
            info = cls(
                tuple(body["outputs"]),
                body["score_output"],
                bool(body.get("score_is_softmax", False)),
                tuple(body["layers"]),
                body.get("kind", CLASSIFIER),
                body.get("kind_reason", ""),
                body.get("fixed_batch"),
            )
            return info, "kind" in body
        # Not ours: follow Caffe/DIGITS (last output in sorted order) and assume logits.
        return cls(tuple(output_names), sorted(output_names)[-1], False, ()), False


def _input_values(spec: PreprocessSpec | None) -> int | None:
    return None if spec is None else spec.channels * spec.height * spec.width


def _spec_input_values(props: dict[str, str]) -> int | None:
    """C*H*W from the stored ``decoder.spec``, read leniently (the full check comes later)."""
    try:
        body = json.loads(props[SPEC_KEY])
        return int(body["channels"]) * int(body["height"]) * int(body["width"])
    except (KeyError, TypeError, ValueError):
        return None


def _open_session(
    path: Path, threads: int | None, providers: list[str], cacheable: bool, plan: execution.RunPlan
) -> tuple[Any, Path | None]:
    """An ONNX Runtime session for ``path``; a large CPU model's optimized graph is kept (decoder.session_cache).

    Returns the session and the cached graph it was opened from (None: from ``path`` itself).
    """
    import onnxruntime as ort

    if not cacheable:  # small nets never get here: session_cache stays unimported for a LeNet cold start
        return _plain_session(path, threads, providers), None
    from decoder import session_cache

    cached = session_cache.cached_graph_path(path, ort.__version__) if session_cache.worth_caching(plan) else None
    if cached is not None and cached.is_file():
        options = execution.session_options(threads)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # optimized already
        try:
            session = ort.InferenceSession(str(cached), options, providers=providers)
            session_cache.used(cached)
            return session, cached
        except Exception:  # damaged or foreign: made again below from the model itself
            session_cache.discard(cached)
    temporary = session_cache.temporary_path(cached) if cached is not None else None
    if temporary is not None:
        options = execution.session_options(threads)
        options.optimized_model_filepath = str(temporary)
        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception:  # saving the graph may be what failed (a full disk): try once more without
            session_cache.discard(temporary)
        else:
            session_cache.publish(temporary, cached)  # type: ignore[arg-type]
            return session, None
    return _plain_session(path, threads, providers), None


def _plain_session(path: Path, threads: int | None, providers: list[str]) -> Any:
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), execution.session_options(threads), providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
        raise DecoderError(f"not a loadable ONNX model ({_first_line(exc)})", path) from None


def _first_line(exc: BaseException) -> str:
    """ONNX Runtime's messages run over many lines; the first (capped) says what went wrong."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


class Model:
    """A converted model ready to predict: ONNX Runtime session + preprocessing + labels."""

    def __init__(
        self,
        session: Any,
        spec: PreprocessSpec | None,
        graph: GraphInfo,
        path: str,
        plan: execution.RunPlan | None = None,
    ) -> None:
        self.session = session
        self.spec = spec
        self.graph = graph
        self.path = path
        self.input_name = session.get_inputs()[0].name
        #: Batch size, pipeline shape and session options chosen for this model (decoder.execution).
        self.plan = plan or execution.plan_for(None, _input_values(spec))
        #: The optimized graph the session was opened from (decoder.session_cache), if it was.
        self.cached_graph: Path | None = None

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        spec: PreprocessSpec | None = None,
        threads: int | None = None,
        providers: str | list[str] | tuple[str, ...] | None = None,
        pipeline: bool = False,
        cache_graph: bool = True,
    ) -> Model:
        """Open a .onnx; ``spec`` replaces the preprocessing stored in it (needed for foreign models).

        ``threads``: ONNX Runtime intra-op threads per call (default: one per core, or with
        ``pipeline=True`` what suits this model in the worker pipeline of :meth:`predict_batches`:
        one for small nets, whose two workers run concurrent calls, every core for large ones).
        ``providers``: a ``--device`` name (``cpu``, ``cuda``, ``tensorrt``...) or ONNX Runtime
        provider names; one this onnxruntime lacks is a DecoderError listing those it has.
        ``cache_graph``: keep a large model's optimized graph for the next load
        (:mod:`decoder.session_cache`; False for temporary copies).
        """
        p = Path(path)
        if p.is_dir():
            raise DecoderError("is a directory, expected a .onnx model", p)
        if not p.is_file():
            raise DecoderError("model file not found", p)
        chosen = execution.resolve_providers(providers)
        # The settings depend on the model's stored cost, read before ONNX Runtime opens the file.
        props = wire.onnx_metadata(p) or {}
        plan = execution.plan_for(ModelCost.from_metadata(props), _spec_input_values(props))
        if threads is None and pipeline:
            threads = plan.pipeline_threads
        if not plan.small:
            execution.release_freed_memory()
        cacheable = cache_graph and not plan.small and chosen == ["CPUExecutionProvider"]
        session, cached = _open_session(p, threads, chosen, cacheable, plan)
        if chosen[0] not in session.get_providers():  # ONNX Runtime falls back to the CPU silently
            raise DecoderError(f"ONNX Runtime could not start {chosen[0]} (missing GPU libraries or driver?)", p)
        props = dict(session.get_modelmeta().custom_metadata_map)
        outputs = [o.name for o in session.get_outputs()]
        shapes = {o.name: list(o.shape) for o in session.get_outputs()}
        if spec is None and not (GRAPH_KEY in props and SPEC_KEY not in props):
            # Ours without a spec is a net whose input is no image (e.g. MTCNN's 15-channel
            # L-Net): it runs on blobs. A foreign file gets the message saying what is missing.
            spec = PreprocessSpec.from_metadata(props, str(p))
        if spec is not None and ModelCost.from_metadata(props) is None:
            plan = execution.plan_for(None, _input_values(spec))  # a foreign model: judged by its input
        model = cls(session, spec, GraphInfo.from_metadata(props, outputs, str(p), shapes), str(p), plan)
        model.cached_graph = cached
        return model

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels if self.spec else ()

    @property
    def is_classifier(self) -> bool:
        """True when the score blob is one vector of class scores per image (labels make sense)."""
        return self.graph.kind == CLASSIFIER

    @property
    def num_classes(self) -> int | None:
        """How many classes the score blob holds per image, when its shape says so."""
        if not self.is_classifier:
            return None
        shape = next(o.shape for o in self.session.get_outputs() if o.name == self.graph.score_output)
        image_shape = per_image_shape(shape, self.graph.fixed_batch)
        return int(np.prod(image_shape)) if all(isinstance(d, int) for d in image_shape) else None

    def require_classifier(self) -> None:
        """Refuse, in one line naming the outputs and their shapes, to label a model that is no classifier."""
        if not self.is_classifier:
            raise self._not_a_classifier(self.graph.kind_reason)

    def _not_a_classifier(self, reason: str, shapes: dict[str, tuple[Any, ...]] | None = None) -> DecoderError:
        outputs = self.session.get_outputs()
        names = [o.name for o in outputs]
        # as Model.run returns them: N images, each with its own part of the output
        declared = {o.name: ("N", *per_image_shape(o.shape, self.graph.fixed_batch)) for o in outputs}
        described = describe_outputs(names, [(shapes or {}).get(n, declared[n]) for n in names])
        return DecoderError(
            f"not a classifier, so there is no label to give: {reason}; its outputs are {described}. "
            f"For every output per image use `decode run IMAGES --model {self.path} -o outputs.npz` "
            "(Python: model.run(model.preprocess(images)))",
            self.path,
        )

    def run(self, blob: np.ndarray, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Forward an already preprocessed (N, C, H, W) float32 batch; every output (N, ...) by name.

        A fixed-batch net (``graph.fixed_batch``) is called with exactly that many images at a
        time, the last call padded with copies of the last image whose results are dropped.
        """
        blob = np.ascontiguousarray(blob, dtype=np.float32)
        names = outputs or [o.name for o in self.session.get_outputs()]

        def call(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
            try:
                return self.session.run(names, feed)
            except Exception as exc:
                shape = list(feed[self.input_name].shape)
                raise DecoderError(f"the model rejected an input of shape {shape} ({_first_line(exc)})") from None

        feeds = {self.input_name: blob}
        values = call(feeds) if self.graph.fixed_batch is None else run_fixed_batch(call, feeds, self.graph.fixed_batch)
        return dict(zip(names, values, strict=True))

    def probabilities(self, blob: np.ndarray) -> np.ndarray:
        """(N, K) class probabilities for a preprocessed batch (softmax only if the net has none).

        Refuses a model that is no classifier, and checks the scores themselves (a file
        converted by an older version may not say): one vector per image, one row per image.
        """
        self.require_classifier()
        scores = self.run(blob, [self.graph.score_output])[self.graph.score_output]
        if scores.shape[0] != len(blob):
            raise self._not_a_classifier(
                f"the score blob has {scores.shape[0]} rows for {len(blob)} images (the graph merges the images "
                "of a batch: convert the Caffe model again)",
                {self.graph.score_output: scores.shape},
            )
        kind, reason = head_kind(scores.shape[1:])
        if kind != CLASSIFIER:
            raise self._not_a_classifier(reason, {self.graph.score_output: ("N", *scores.shape[1:])})
        return to_probabilities(scores, self.graph.score_is_softmax)

    def preprocess(self, items: Iterable[ImageItem]) -> np.ndarray:
        """DIGITS's preprocessing of images (paths or HxW / HxWxC uint8 RGB arrays) into a batch."""
        from decoder.preprocess import preprocess_batch

        return preprocess_batch(list(items), self._require_spec())

    def predict_batches(
        self,
        items: Iterable[ImageItem],
        top_k: int = 5,
        batch_size: int | None = None,
        workers: int | None = None,
        kind: PoolKind = "thread",
    ) -> Iterator[BatchResult]:
        """Results one batch at a time, in input order, broken images reported instead of raised.

        Each batch is one NCHW session call. ``workers`` threads decode and preprocess batches
        ahead (``kind="process"``: processes); for a small net each worker also runs its own
        batch through ONNX Runtime, for a large one this thread does, one batch at a time with
        every core (:attr:`plan`). ``workers=None`` and ``batch_size=None`` take the plan's;
        ``workers=0`` does everything here. The fastest pipeline comes from a model loaded
        with ``pipeline=True``, as the CLI does.
        """
        self.require_classifier()
        for batch in self._prepared_batches(items, batch_size, workers, kind, self.probabilities):
            # every image of a batch may have failed: then there are no scores
            probabilities = batch.scores if batch.scores is not None else np.empty((0, len(self.labels)))
            yield BatchResult(batch.names, batch.positions, probabilities, batch.failures, self.labels, top_k)

    def _prepared_batches(
        self,
        items: Iterable[ImageItem],
        batch_size: int | None,
        workers: int | None,
        kind: PoolKind,
        infer: Callable[[np.ndarray], Any],
    ) -> Iterator[PreparedBatch]:
        """The batch pipeline with this model's plan filling in what the caller left as None."""
        from decoder.batching import prepared_batches

        return prepared_batches(
            items,
            self._require_spec(),
            batch_size or self.default_batch_size(),
            self.plan.workers if workers is None else workers,
            kind,
            infer=infer,
            infer_in_workers=self.plan.infer_in_workers,
        )

    def run_images(
        self, items: Iterable[ImageItem], batch_size: int | None = None, workers: int | None = None
    ) -> Iterator[OutputBatch]:
        """Every output blob for images, with the model's own preprocessing, one batch at a time.

        For any model, classifier or not (``decode run``): each batch's outputs are (rows, ...)
        arrays by name, in input order; broken images are reported in ``failures``, never raised.
        """
        for batch in self._prepared_batches(items, batch_size, workers, "thread", self.run):
            outputs: dict[str, np.ndarray] = batch.scores if batch.scores is not None else {}  # type: ignore[assignment]
            yield OutputBatch(batch.names, batch.positions, outputs, batch.failures)

    def predict_iter(
        self,
        items: Iterable[ImageItem],
        top_k: int = 5,
        batch_size: int | None = None,
        workers: int | None = None,
        skip_errors: bool = False,
    ) -> Iterator[Prediction]:
        """Predictions in input order, yielded as each batch finishes (memory stays flat).

        An unreadable image raises its :class:`DecoderError` when its batch is reached
        (earlier predictions have been yielded by then); ``skip_errors=True`` drops it
        instead (see :meth:`predict_batches` to learn which ones were dropped).
        """
        for result in self.predict_batches(items, top_k, batch_size, workers):
            if result.failures and not skip_errors:
                yield from (
                    p
                    for p, position in zip(result.predictions, result.positions, strict=True)
                    if position < result.failures[0].position
                )
                raise result.failures[0].error
            yield from result.predictions

    def predict(
        self,
        items: Iterable[ImageItem] | ImageItem,
        top_k: int = 5,
        batch_size: int | None = None,
        workers: int | None = None,
    ) -> list[Prediction]:
        """Predictions for image paths, arrays or PIL images, as a list (one item gives a one-element list).

        For very long inputs, iterate :meth:`predict_iter` instead: same results, flat memory.
        """
        if isinstance(items, (str, os.PathLike, np.ndarray)) or not hasattr(items, "__iter__"):
            items = [items]  # one path, one HxW(xC) array, or one PIL image
        return list(self.predict_iter(items, top_k=top_k, batch_size=batch_size, workers=workers))

    def default_batch_size(self) -> int:
        """Images per call when none is given: the plan's, from the model's activation memory per image.

        The largest power of two up to :data:`MAX_BATCH_SIZE` whose activations and waiting
        inputs fit :data:`decoder.execution.BATCH_MEMORY` (LeNet: 256, ResNet-50: 4); see
        :func:`decoder.execution.batch_size_for`.
        """
        self._require_spec()
        return self.plan.batch_size

    def _require_spec(self) -> PreprocessSpec:
        if self.spec is None:
            raise DecoderError("the model carries no image preprocessing (its input is not an image)", self.path)
        return self.spec


@dataclass(frozen=True)
class OutputBatch:
    """One batch of :meth:`Model.run_images`: every output's rows, the rows' names, and the failures."""

    names: list[str]  # display name of each row
    positions: list[int]  # input-stream position of each row
    outputs: dict[str, np.ndarray]  # output name -> (rows, ...); empty when every image failed
    failures: list[Failure]


def run_fixed_batch(
    call: Callable[[dict[str, np.ndarray]], list[np.ndarray]], feeds: dict[str, np.ndarray], batch: int
) -> list[np.ndarray]:
    """``call`` on ``batch`` images at a time, each output stacked over the images as (N, ...).

    For nets whose layers mix the images of a batch (converted with Caffe's declared batch,
    see :mod:`decoder.converter`): the last call is padded with copies of the last image and
    the padding's results dropped. With a batch of 1 each call's outputs are that image's
    (a leading axis is added unless the output already starts with the batch 1); with a
    larger batch every output has one row per image (conversion checks it).
    """
    count = len(next(iter(feeds.values())))
    pieces: list[list[np.ndarray]] = []
    for start in range(0, max(count, 1), batch):
        real = min(batch, count - start)
        chunk = {}
        for name, value in feeds.items():
            part = value[start : start + batch]
            if real < batch:  # pad with the last image (or zeros when there is none)
                filler = part[-1:] if real else np.zeros((1, *value.shape[1:]), value.dtype)
                part = np.concatenate([part, np.repeat(filler, batch - real, axis=0)])
            chunk[name] = part
        outputs = [np.asarray(o) for o in call(chunk)]
        if batch == 1:
            outputs = [o if o.ndim and o.shape[0] == 1 else o[None] for o in outputs]
        pieces.append([o[: max(real, 0)] for o in outputs])
    return [np.concatenate(parts) for parts in zip(*pieces, strict=True)]


@dataclass(frozen=True)
class BatchResult:
    """What one batch gave: per-image probabilities (with names and input positions) and the failures.

    :attr:`predictions` are built on first access: a caller that only needs the numbers
    (the CLI's JSON/CSV writers, accuracy counts) skips ~10 us of object building per image.
    """

    names: list[str]  # display name of each row
    positions: list[int]  # input-stream position of each row
    probabilities: np.ndarray  # (rows, K)
    failures: list[Failure]
    labels: tuple[str, ...] = ()
    top_k: int = 5

    @cached_property
    def predictions(self) -> list[Prediction]:
        """One :class:`Prediction` per row, in input order."""
        return decode(self.probabilities, self.labels, self.names, self.top_k) if self.names else []

    @cached_property
    def top_indices(self) -> np.ndarray:
        """(rows, k) class indices, best first, ties to the lower index: the order of :attr:`predictions`."""
        k = max(1, min(self.top_k, self.probabilities.shape[1])) if self.probabilities.ndim == 2 else 1
        return np.argsort(-self.probabilities, axis=1, kind="stable")[:, :k]
