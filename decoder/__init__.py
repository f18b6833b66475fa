"""decoder: Caffe and NVIDIA DIGITS classifiers, converted to ONNX and run with DIGITS's exact preprocessing.

    from decoder import Model
    model = Model.load("lenet.onnx")
    for prediction in model.predict(["digit.png"]):
        print(prediction.label, prediction.probability)

Heavy modules (ONNX Runtime, the converter) load on first use, so importing the package
and running the CLI stay quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from decoder.errors import DecoderError
from decoder.spec import PreprocessSpec

if TYPE_CHECKING:
    from decoder.decoding import Prediction, Ranked
    from decoder.runtime import Model

__all__ = ["DecoderError", "Model", "Prediction", "PreprocessSpec", "Ranked"]
__version__ = "0.1.0"

_LAZY = {"Model": "decoder.runtime", "Prediction": "decoder.decoding", "Ranked": "decoder.decoding"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'decoder' has no attribute {name!r}")
