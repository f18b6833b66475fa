"""The diagnosis as an object, as JSON and as text for a terminal.

JSON schema (``Report.to_dict``)::

    {"verdict": "FAILED: ...", "passed": false, "model": "...", "inputs": {...},
     "findings": [{"code", "severity", "message", "fix", "numpy"?, "pycaffe"?, "evidence"}],
     "transform": {...} | null, "repair": {"numpy": "...", "verified": {...}} | null,
     "layers": [{"name", "type", "shape", "mean", "std", "min", "max", "zero_fraction",
                 "nonfinite_fraction", "spread"}], "variants": [...] | null,
     "stated": {"channel order": "BGR (assumed: ...)", ...}, "notes": [...]}

``passed`` is true when no finding is an error. Findings are sorted errors first.
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from decoder.diagnosis.findings import Finding, severity_rank
from decoder.diagnosis.fixes import Repair
from decoder.diagnosis.forward import LayerStats
from decoder.diagnosis.variants import VariantResult

#: Columns of the text report (findings are wrapped; code is not).
WIDTH = 100


@dataclass
class Report:
    """Everything a diagnosis found, in the order a reader needs it."""

    model: str
    findings: list[Finding] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)
    layers: list[LayerStats] = field(default_factory=list)
    variants: list[VariantResult] | None = None
    repair: Repair | None = None
    repair_check: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: The preprocessing the inputs were measured against: setting -> value (and where it came from).
    stated: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.findings = merge_findings(self.findings)

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def passed(self) -> bool:
        return not self.errors

    def finding(self, code: str) -> Finding | None:
        return next((f for f in self.findings if f.code == code), None)

    @property
    def verdict(self) -> str:
        """One line: PASSED/FAILED, and the codes of the errors and warnings."""
        errors = [f.code for f in self.findings if f.severity == "error"]
        warnings = [f.code for f in self.findings if f.severity == "warning"]
        n = self.inputs.get("count", 0)
        what = f"{n} input{'s' if n != 1 else ''}" if n else "the model files"
        if errors:
            text = f"FAILED: {len(errors)} error{'s' if len(errors) != 1 else ''} ({', '.join(errors)})"
        else:
            text = "PASSED: no error"
        if warnings:
            text += f", {len(warnings)} warning{'s' if len(warnings) != 1 else ''} ({', '.join(warnings)})"
        return f"{text} in {what}"

    def fix(self, blob: np.ndarray) -> np.ndarray:
        """Apply the repair the diagnosis worked out to a user's blob (N, C, H, W)."""
        if self.repair is None:
            raise ValueError("this diagnosis found no repair to apply")
        return self.repair.apply(np.asarray(blob, dtype=np.float32))

    def to_dict(self) -> dict[str, Any]:
        repair = None
        if self.repair is not None:
            repair = {
                "transform": self.repair.transform.to_dict(),
                "invert_pixels": self.repair.invert_pixels,
                "reverse_channels": self.repair.reverse_channels,
                "numpy": self.repair.numpy_code(),
                "verified": self.repair_check,
            }
        return _clean(
            {
                "verdict": self.verdict,
                "passed": self.passed,
                "model": self.model,
                "inputs": self.inputs,
                "findings": [f.to_dict() for f in self.findings],
                "repair": repair,
                "layers": [s.to_dict() for s in self.layers],
                "variants": None if self.variants is None else [v.to_dict() for v in self.variants],
                "stated": self.stated,
                "notes": self.notes,
            }
        )

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def format(self, show_layers: bool = False) -> str:
        """The report as a person reads it in a terminal."""
        lines = [f"model: {self.model}", f"inputs: {_describe_inputs(self.inputs)}"]
        if self.stated:
            short = {k: v.split(" (")[0] + (" (assumed)" if "(assumed" in v else "") for k, v in self.stated.items()}
            lines += _wrap("measured against: " + "; ".join(f"{k}: {v}" for k, v in short.items()), indent=18)
        lines.append("")
        if not self.findings:
            lines.append("no findings")
        for finding in self.findings:
            lines += _wrap(f"{finding.severity.upper():7} {finding.code}: {finding.message}")
            if finding.fix:
                lines += _wrap(f"        fix: {finding.fix}")
        if self.repair is not None:
            whose = "your batch" if self.inputs.get("blob_shape") else "the stated preprocessing of your images"
            lines += ["", f"Repair (numpy; `blob` is {whose}, `mean` the model's mean):"]
            lines += ["    " + line for line in self.repair.numpy_code().splitlines()]
            if self.repair_check:
                lines += _wrap(f"    -> {_describe_check(self.repair_check)}", indent=7)
        pycaffe = next((f.pycaffe for f in self.findings if f.pycaffe), "")
        numpy_text = next((f.numpy for f in self.findings if f.numpy), "")
        if numpy_text:
            lines += ["", "The model's preprocessing of an image file, as its metadata states it (numpy + Pillow):"]
            lines += ["    " + line for line in numpy_text.splitlines()]
        if pycaffe:
            lines += ["", "The same with pycaffe:"]
            lines += ["    " + line for line in pycaffe.splitlines()]
        if self.variants:
            lines += ["", "Preprocessing variants on your images:", _variant_table(self.variants)]
        if show_layers and self.layers:
            lines += ["", "Per-layer activations:", _layer_table(self.layers)]
        for note in self.notes:
            lines.append(f"note: {note}")
        lines += ["", self.verdict]
        return "\n".join(lines)


def _wrap(text: str, indent: int = 8) -> list[str]:
    """Terminal lines of at most WIDTH columns, continuation lines indented."""
    return textwrap.wrap(text, WIDTH, subsequent_indent=" " * indent, break_on_hyphens=False, break_long_words=False)


def merge_findings(findings: list[Finding]) -> list[Finding]:
    """One finding per code (the most severe, first seen on ties), errors first."""
    chosen: dict[str, Finding] = {}
    for finding in findings:
        current = chosen.get(finding.code)
        if current is None or severity_rank(finding.severity) < severity_rank(current.severity):
            chosen[finding.code] = finding
    order = {code: i for i, code in enumerate(dict.fromkeys(f.code for f in findings))}
    return sorted(chosen.values(), key=lambda f: (severity_rank(f.severity), order[f.code]))


def _describe_inputs(inputs: dict[str, Any]) -> str:
    parts = []
    if inputs.get("images"):
        parts.append(f"{inputs['images']} image(s)")
    if inputs.get("blob_shape"):
        parts.append(f"your blobs {inputs['blob_shape']} {inputs.get('blob_range', '')}".rstrip())
    if inputs.get("expected"):
        parts.append(f"{inputs['expected']} expected label(s)")
    return ", ".join(parts) or "none (model files only)"


def _describe_check(check: dict[str, Any]) -> str:
    parts = []
    if "accuracy" in check:
        parts.append(f"accuracy on the expected labels {100 * check['accuracy']:.1f}%")
    if "agreement_with_digits" in check:
        parts.append(f"same labels as the stated preprocessing for {100 * check['agreement_with_digits']:.1f}%")
    if "max_difference_from_digits" in check:
        parts.append(f"max |difference| from its blob {check['max_difference_from_digits']:.3g}")
    if "logit_spread" in check:
        parts.append(f"logit spread {100 * check['logit_spread']:.0f}%")
    if "distinct_labels" in check:
        parts.append(f"{check['distinct_labels']} distinct labels")
    return "after the repair: " + ", ".join(parts)


def _variant_table(results: list[VariantResult]) -> str:
    rows = ["    variant            accuracy  =your preds  =stated   what"]
    for r in results:
        rows.append(
            f"    {r.name:<18} {_percent(r.accuracy):>8}  {_percent(r.agreement_with_blobs):>11}  "
            f"{_percent(r.agreement_with_digits):>7}   {r.description}"
        )
    return "\n".join(rows)


def _layer_table(layers: list[LayerStats]) -> str:
    rows = ["    layer            type           shape            mean       std    zero%  spread"]
    for s in layers:
        shape = "x".join(map(str, s.shape))
        spread = "-" if math.isnan(s.spread) else f"{100 * s.spread:5.1f}%"
        rows.append(
            f"    {s.name[:16]:<16} {s.type[:14]:<14} {shape[:16]:<16} {s.mean:9.3g} {s.std:9.3g} "
            f"{100 * s.zero_fraction:6.1f}  {spread}"
        )
    return "\n".join(rows)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _clean(value: Any) -> Any:
    """JSON-safe: NaN -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
