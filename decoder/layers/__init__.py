"""One converter per Caffe layer type; importing this package registers them all.

Where is layer X converted? ``decoder/layers/<family>.py``, the function decorated with
``@register("X")``. :func:`decoder.layers.registry.supported_types` lists them.
"""

from decoder.layers import activations, convolution, inner_product, lrn, pooling, shape_ops, softmax
from decoder.layers.registry import get_converter, register, supported_types

__all__ = [
    "activations",
    "convolution",
    "get_converter",
    "inner_product",
    "lrn",
    "pooling",
    "register",
    "shape_ops",
    "softmax",
    "supported_types",
]
