"""How to run a given model on this machine: ONNX Runtime options, execution provider, batches, threads.

One rule set for every model would be wrong by 2x somewhere (FACTS.md section 9): the
settings once tuned on LeNet (``ORT_ENABLE_EXTENDED``, one intra-op thread per call) halve
ResNet-50's rate, whose convolutions want ONNX Runtime's default ``ORT_ENABLE_ALL`` (the
NCHWc layout) and every core in one call. Every model now gets ``ORT_ENABLE_ALL``: measured
in CPU-seconds per image at batch 64 (scripts/benchmark.py --explore, a loaded 2-core
machine), it also beats ``EXTENDED`` on CIFAR-10 quick (1.75-2x) and matches or beats it on
LeNet (1.0-1.1x), so ``Model.run`` uses exactly ONNX Runtime's default options. What differs
by model is the pipeline, chosen from what one image costs (``decoder.cost`` metadata,
written at conversion):

- **small** nets (under :data:`SMALL_MULTIPLY_ADDS` per image, LeNet and CIFAR-10 class):
  decoding an image costs about as much as the network, so both pipeline workers decode AND
  infer, one intra-op thread each (no thread pool spinning on the core that decodes).
- **large** nets: the network is 85-95% of the time; one inference runs at a time with
  every core in the calling thread, while a worker thread decodes the next batches (Pillow
  releases the GIL).

Memory: a batch's activations, not its input, dominate a large net's memory (ResNet-50:
9 MB per image inside against 0.6 MB of input), so the batch size is the largest power of
two whose activations and input fit :data:`BATCH_MEMORY`, with at most ``workers + 1``
prepared batches waiting.

Models without the metadata (converted by an older version, or foreign files) are judged
by their input size: up to 64x64 pixels counts as small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from decoder.cost import ModelCost
from decoder.errors import DecoderError

#: Per-image multiply-adds below which a net counts as small (LeNet 2.3 M, CIFAR-10 quick 12 M;
#: AlexNet, the lightest ImageNet net of the ladder, 724 M).
SMALL_MULTIPLY_ADDS = 100_000_000
#: Inputs up to this many values per image count as small when the cost is not stored (64x64x1).
SMALL_INPUT_VALUES = 64 * 64
#: Most images per ONNX Runtime call: past 256 LeNet's throughput is flat (scripts/benchmark.py).
MAX_BATCH_SIZE = 256
#: Bytes a batch may take inside the network (activations) plus as input, per inference in flight.
BATCH_MEMORY = 64 * 2**20
#: Pipeline workers (threads) for small nets: each decodes and infers its own batches.
SMALL_WORKERS = 2
#: Pipeline workers for large nets: decoding ahead while the caller's thread infers.
LARGE_WORKERS = 1

#: ``--device`` names and the ONNX Runtime execution providers they stand for.
DEVICES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "qnn": "QNNExecutionProvider",
}


@dataclass(frozen=True)
class RunPlan:
    """The settings chosen for one model (see the module docstring for why)."""

    small: bool
    workers: int  # pipeline worker threads
    infer_in_workers: bool  # small nets: each worker infers its batch; large: the caller's thread does
    pipeline_threads: int | None  # intra-op threads for a session driven by the pipeline (None: every core)
    batch_size: int
    cost: ModelCost | None = None


def plan_for(cost: ModelCost | None, input_values: int | None) -> RunPlan:
    """The settings for a model costing ``cost`` per image (``input_values``: C*H*W of its input)."""
    if cost is not None:
        small = cost.multiply_adds < SMALL_MULTIPLY_ADDS
    else:
        small = input_values is not None and input_values <= SMALL_INPUT_VALUES
    input_bytes = 4 * (input_values or 0)
    workers = SMALL_WORKERS if small else LARGE_WORKERS
    return RunPlan(
        small=small,
        workers=workers,
        infer_in_workers=small,
        pipeline_threads=1 if small else None,
        batch_size=batch_size_for(cost, input_bytes, workers),
        cost=cost,
    )


def batch_size_for(cost: ModelCost | None, input_bytes: int, workers: int) -> int:
    """The largest power of two up to :data:`MAX_BATCH_SIZE` whose memory per batch fits :data:`BATCH_MEMORY`.

    Per image a batch holds its input in every waiting slot (``workers + 1``) and, while it
    runs, the network's activations (estimated as twice the input when the cost is unknown).
    """
    activations = cost.activation_bytes if cost is not None else 2 * input_bytes
    per_image = max(1, activations + (workers + 1) * input_bytes)
    size = 1
    while size * 2 <= MAX_BATCH_SIZE and size * 2 * per_image <= BATCH_MEMORY:
        size *= 2
    return size


def session_options(threads: int | None) -> Any:
    """ONNX Runtime's default options (``ORT_ENABLE_ALL``), quiet, ``threads`` intra-op threads (None: one per core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return options


def resolve_providers(requested: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """ONNX Runtime provider names for ``requested`` (``--device`` names or provider names).

    None means the CPU. Any other provider is followed by the CPU, which runs the nodes it
    cannot. One that this onnxruntime build lacks is a DecoderError listing those it has.
    """
    import onnxruntime as ort

    if requested is None:
        return ["CPUExecutionProvider"]
    names = [requested] if isinstance(requested, str) else list(requested)
    available = ort.get_available_providers()
    providers = []
    for name in names:
        provider = DEVICES.get(name.lower(), name)
        if provider not in available:
            offered = ", ".join(_device_name(p) for p in available)
            hint = " (install onnxruntime-gpu for cuda/tensorrt)" if provider in _GPU_PROVIDERS else ""
            raise DecoderError(f"device {name!r} is not available in this onnxruntime; available: {offered}{hint}")
        providers.append(provider)
    if "CPUExecutionProvider" not in providers:
        providers.append("CPUExecutionProvider")
    return providers


_GPU_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}


def _device_name(provider: str) -> str:
    short = next((name for name, p in DEVICES.items() if p == provider), None)
    return f"{short} ({provider})" if short else provider


_heap_tuned = False


def release_freed_memory() -> None:
    """Make glibc hand large freed blocks back to the OS (a fixed 128 KiB mmap threshold).

    glibc raises its mmap threshold each time a large mmapped block is freed (up to 32 MB),
    so the transient copies ONNX Runtime makes of a large net's weights while it optimizes
    the graph (BatchNorm folding, NCHWc reordering) end up in the heap and stay counted in
    the process's memory. Measured on ResNet-50 (98 MB of weights), 2 cores: peak RSS of
    loading and running a batch 386 -> 270 MB, resident afterwards 366 -> 216 MB. Large nets
    only (a few big allocations per batch); a no-op where there is no glibc.
    """
    global _heap_tuned
    if _heap_tuned:
        return
    _heap_tuned = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass
