"""The table of Caffe layer converters: one function per Caffe layer type.

A converter is reached only through :func:`register`; registering a type twice is a bug
and raises at import time; looking up an unknown type returns ``None`` so the converter
can collect every unsupported layer and report them all at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from decoder.caffe_proto.caffe_pb2 import LayerParameter
    from decoder.layers.context import ConversionContext

ConvertFn = Callable[["LayerParameter", "ConversionContext"], None]


@dataclass(frozen=True)
class LayerConverter:
    """A registered converter and what it needs from the caffemodel."""

    caffe_type: str
    convert: ConvertFn
    #: The layer cannot run without trained blobs (a deploy layer with none is an error:
    #: Caffe would silently keep its random initial weights).
    needs_weights: bool
    summary: str


_REGISTRY: dict[str, LayerConverter] = {}


def register(*caffe_types: str, needs_weights: bool = False) -> Callable[[ConvertFn], ConvertFn]:
    """Register ``fn`` as the converter of each of ``caffe_types``."""

    def decorator(fn: ConvertFn) -> ConvertFn:
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        for caffe_type in caffe_types:
            if caffe_type in _REGISTRY:
                raise RuntimeError(f"Caffe layer type {caffe_type!r} registered twice")
            _REGISTRY[caffe_type] = LayerConverter(caffe_type, fn, needs_weights, summary)
        return fn

    return decorator


def get_converter(caffe_type: str) -> LayerConverter | None:
    """The converter for ``caffe_type``, or ``None`` when we do not support it."""
    return _REGISTRY.get(caffe_type)


def supported_types() -> list[LayerConverter]:
    """All registered converters, sorted by Caffe type (used to generate the README table)."""
    return [_REGISTRY[t] for t in sorted(_REGISTRY)]
