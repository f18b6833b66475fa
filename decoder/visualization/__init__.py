"""See what a network learned: filters, activations and per-layer statistics.

The numbers need only numpy, onnx and ONNX Runtime; the pictures need matplotlib
(``pip install 'caffe-decoder[viz]'``)::

    from decoder.visualization import Visualizer, write_report

    viz = Visualizer("lenet.onnx")
    viz.filters[0].weights            # conv1 kernels, (20, 1, 5, 5)
    forward = viz.forward("digit.png") # every layer's output for one image
    for s in viz.statistics(forward):
        print(s.layer, s.shape, s.mean, s.std, s.zero_fraction, s.flags)

    write_report(viz, "digit.png", "out/")  # PNGs, stats.json, index.html
"""

from __future__ import annotations

from decoder.visualization.analysis import (
    Blob,
    FilterBank,
    Forward,
    LayerStats,
    Visualizer,
    blob_statistics,
)
from decoder.visualization.report import Report, write_report

__all__ = [
    "Blob",
    "FilterBank",
    "Forward",
    "LayerStats",
    "Report",
    "Visualizer",
    "blob_statistics",
    "write_report",
]
