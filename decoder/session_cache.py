"""ONNX Runtime's optimized graph of a large model, kept on disk so the next process skips optimizing it.

Why: creating a session for ResNet-50 with ONNX Runtime's full optimizations (BatchNorm
folding, the NCHWc layout and its weight reordering) took 0.48 s, 0.75 s with the heap
setting that keeps its peak memory down (decoder.execution.release_freed_memory), in every
process: each `decode` run, each server start, each Ray actor. Loading the graph ONNX
Runtime saved after optimizing it took 0.15 s at a peak RSS of 212-218 MB instead of 270,
with the same results and speed (measured on 2 cores, ResNet-50 98 MB).

Which models: those whose graph rewriting is the cost, i.e. large nets (decoder.execution)
with at most :data:`MAX_WEIGHT_BYTES` of weights. Saving the graph makes ONNX Runtime hold a
second copy of the model once, and the time it saves is the rewriting: measured on the
ladder, ResNet-50 (98 MB, BatchNorm + Scale everywhere) 1.16 -> 0.60 s, GoogLeNet (27 MB)
0.51 -> 0.44 s, but AlexNet (233 MB) 1.09 -> 1.04 s and VGG-16 (528 MB) 2.63 -> 2.47 s,
whose loading is reading and repacking big weights, for +320 and +620 MB of peak memory on
the first run.

The saved graph is only valid where it was made: NCHWc kernels depend on the CPU, the
format on the ONNX Runtime version. The cache key is therefore the model file's identity
(path, size, modification time, inode), ONNX Runtime's version and the CPU's model and
feature flags; anything else gets a new entry. Only the CPU provider's graphs are kept
(another provider's fused nodes are its own business), and only for models without
external data. A cache that cannot be written or read is skipped without a word: it saves
time, it is never needed for a right answer.

Where: ``$DECODER_CACHE`` if set (``off`` or ``0`` turns the cache off), else
``$XDG_CACHE_HOME/decoder``, else ``~/.cache/decoder``; files are named
``<model stem>-<key>.ort.onnx``. The folder is kept under :data:`MAX_BYTES` by removing
the least recently used graphs; deleting it is always safe. Models loaded from temporary
copies (Ray's actors) are not cached: every copy would be a new entry.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from decoder.execution import RunPlan

#: ``$DECODER_CACHE`` values that turn the cache off.
OFF = ("off", "0", "no", "false")
#: Most bytes of optimized graphs kept (about twenty ResNet-50s).
MAX_BYTES = 2 * 2**30
#: Largest weights whose graph is kept (see the module docstring).
MAX_WEIGHT_BYTES = 128 * 2**20


def worth_caching(plan: RunPlan) -> bool:
    """Whether a model planned as ``plan`` gains from a kept graph: a large net of modest weights."""
    return not plan.small and plan.cost is not None and plan.cost.weight_bytes <= MAX_WEIGHT_BYTES


def cache_folder() -> Path | None:
    """Where optimized graphs are kept, or None when ``$DECODER_CACHE`` turns the cache off."""
    configured = os.environ.get("DECODER_CACHE")
    if configured is not None:
        return None if configured.strip().lower() in OFF or not configured.strip() else Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "decoder"


def cached_graph_path(model: Path, ort_version: str) -> Path | None:
    """The file the optimized graph of ``model`` is (or would be) kept in; None when not to cache."""
    folder = cache_folder()
    if folder is None:
        return None
    try:
        resolved = model.resolve()
        stat = resolved.stat()
    except OSError:
        return None
    if Path(f"{resolved}.data").exists():  # external data: the saved graph would need its own data file
        return None
    identity = "\0".join(
        [str(resolved), str(stat.st_size), str(stat.st_mtime_ns), str(stat.st_ino), ort_version, _cpu_identity()]
    )
    import hashlib  # here, not at the top: a LeNet cold start never gets this far

    key = hashlib.sha256(identity.encode()).hexdigest()[:24]
    return folder / f"{model.stem}-{key}.ort.onnx"


def temporary_path(final: Path) -> Path | None:
    """A unique name beside ``final`` for ONNX Runtime to write to (renamed into place once complete)."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(final.parent, os.W_OK):
        return None
    return final.with_name(f".{final.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


def publish(temporary: Path, final: Path) -> None:
    """Move a completely written graph into place (atomic: concurrent processes never see half a file)."""
    try:
        if temporary.is_file() and temporary.stat().st_size > 0:
            os.replace(temporary, final)
            evict(final.parent, keep=final)
    except OSError:
        pass
    finally:
        discard(temporary)


def used(path: Path) -> None:
    """Mark a graph as just used (its modification time orders eviction)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def evict(folder: Path, keep: Path, limit: int = MAX_BYTES) -> None:
    """Remove the least recently used graphs until the folder holds at most ``limit`` bytes (``keep`` stays)."""
    entries = []
    for entry in folder.glob("*.ort.onnx"):
        with contextlib.suppress(OSError):
            stat = entry.stat()
            entries.append((stat.st_mtime_ns, stat.st_size, entry))
    total = sum(size for _, size, _ in entries)
    for _, size, entry in sorted(entries, key=lambda e: e[0]):
        if total <= limit:
            break
        if entry != keep:
            discard(entry)
            total -= size


def discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _cpu_identity() -> str:
    """The CPU's model name and feature flags (the NCHWc kernels ONNX Runtime chose depend on them)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
        wanted = [line for line in lines if line.startswith(("model name", "flags", "Features", "CPU part"))]
        return "\n".join(sorted(set(wanted)))
    except OSError:
        import platform

        return f"{platform.machine()} {platform.processor()}"
