"""Why are the predictions constant, or different from DIGITS's? Findings with causes and fixes.

    from decoder.diagnosis import diagnose
    report = diagnose("lenet.onnx", blobs=my_blobs)          # or images=[...], expect=[...]
    print(report.format())                                   # report.to_dict() for JSON
    fixed = report.fix(my_blobs)                             # the repair it worked out

Layer by layer against OpenCV's Caffe, another .onnx or another input: :func:`compare`.
"""

from __future__ import annotations

from decoder.diagnosis.compare import Comparison, compare
from decoder.diagnosis.findings import CODES, Finding
from decoder.diagnosis.report import Report
from decoder.diagnosis.run import diagnose

__all__ = ["CODES", "Comparison", "Finding", "Report", "compare", "diagnose"]
