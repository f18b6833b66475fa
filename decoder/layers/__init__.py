"""One converter per Caffe layer type; importing this package registers them all.

Where is layer X converted? ``decoder/layers/<family>.py``, the function decorated with
``@register("X")``. :func:`decoder.layers.registry.supported_types` lists them.
"""

from decoder.layers import (
    activations,
    argmax,
    convolution,
    eltwise,
    inner_product,
    lrn,
    normalization,
    pooling,
    power,
    shape_ops,
    softmax,
)
from decoder.layers.registry import get_converter, register, supported_types

__all__ = [
    "activations",
    "argmax",
    "convolution",
    "eltwise",
    "get_converter",
    "inner_product",
    "lrn",
    "normalization",
    "pooling",
    "power",
    "register",
    "shape_ops",
    "softmax",
    "supported_types",
]
