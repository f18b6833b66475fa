"""decoder: Caffe and NVIDIA DIGITS classifiers, converted to ONNX and run with DIGITS's exact preprocessing."""

from decoder.errors import DecoderError
from decoder.spec import PreprocessSpec

__all__ = ["DecoderError", "PreprocessSpec"]
__version__ = "0.1.0"
