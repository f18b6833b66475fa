"""`decode convert --verify`: the written .onnx against OpenCV 4's import of the same Caffe files.

OpenCV's ``readNetFromCaffe`` is an independent Caffe implementation (it upgrades legacy
formats, matches weights by name and reproduces Caffe's pooling); feeding both the same
seeded random batch and comparing every graph output catches a wrong conversion before
the user relies on it. Inputs are de-meaned-pixel-sized values (-128..128), batch 2, so
batch handling is checked too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from decoder.errors import DecoderError

#: Relative error (to the reference's largest magnitude) above which an output fails.
TOLERANCE = 1e-4


@dataclass(frozen=True)
class OutputCheck:
    """How far one graph output is from OpenCV's."""

    name: str
    max_abs: float
    relative: float

    @property
    def passed(self) -> bool:
        return self.relative <= TOLERANCE


def verify_conversion(
    onnx_path: str | os.PathLike[str],
    prototxt: str | os.PathLike[str],
    caffemodel: str | os.PathLike[str],
    batch: int = 2,
    seed: int = 0,
) -> list[OutputCheck]:
    """Largest error per graph output between our .onnx and OpenCV on one random batch.

    OpenCV is fed the deploy net as conversion saw it (training-only layers and unread
    inputs dropped, see :mod:`decoder.opencv_caffe`). Raises
    :class:`decoder.opencv_caffe.OpenCVMissing` when OpenCV 4 is absent, and a DecoderError
    quoting OpenCV's own reason when it refuses the files.
    """
    import onnxruntime as ort

    from decoder.opencv_caffe import forward, load_opencv_net, require_opencv_caffe
    from decoder.spec import read_graph_metadata

    require_opencv_caffe()  # before any work: the reference must exist
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    reference_net = load_opencv_net(prototxt, caffemodel)
    graph = read_graph_metadata(dict(session.get_modelmeta().custom_metadata_map), str(onnx_path))
    # a net that mixes images keeps its declared batch: both sides then see that many images
    batch = graph.get("fixed_batch") or batch
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for model_input in session.get_inputs():
        dims = model_input.shape[1:]
        if not all(isinstance(d, int) for d in dims):
            raise DecoderError(
                f"--verify needs a static input shape, got {model_input.shape} for {model_input.name!r}", onnx_path
            )
        feeds[model_input.name] = rng.uniform(-128, 128, (batch, *dims)).astype(np.float32)

    # OpenCV names outputs by layer; compare the outputs that are their layer's first top.
    producers = {layer["tops"][0]: layer["name"] for layer in graph["layers"] if layer["tops"]}
    outputs = [o.name for o in session.get_outputs() if o.name in producers]
    known = set(reference_net.net.getLayerNames())
    compared = [o for o in outputs if producers[o] in known]
    ours = dict(zip(outputs, session.run(outputs, feeds), strict=True))
    opencv_feeds = {name: feeds[name] for name in reference_net.inputs if name in feeds}
    reference = dict(zip(compared, forward(reference_net, opencv_feeds, [producers[o] for o in compared]), strict=True))
    checks = []
    for output in compared:
        a = ours[output].astype(np.float64)
        b = reference[output].astype(np.float64).reshape(a.shape)
        max_abs = float(np.max(np.abs(a - b))) if a.size else 0.0
        checks.append(OutputCheck(output, max_abs, max_abs / max(float(np.max(np.abs(b))), 1e-12)))
    if not checks:
        raise DecoderError("OpenCV produced none of the graph's outputs to compare", Path(prototxt))
    return checks
