"""The preprocessing a .onnx carries, one setting a line with where it came from (convert and attach)."""

from __future__ import annotations

import numpy as np

from decoder.spec import ASSUMED_PREFIX, PreprocessSpec


def _mean_text(spec: PreprocessSpec) -> str:
    if spec.mean is None or spec.mean_kind == "none":
        return "none"
    if spec.mean_kind == "pixel":
        return "pixel " + ",".join(f"{v:g}" for v in np.asarray(spec.mean, np.float64))
    return f"image {spec.mean.shape[2]}x{spec.mean.shape[1]} (average {float(np.mean(spec.mean)):.4g})"


def settings_lines(spec: PreprocessSpec, score_output: str | None = None) -> list[str]:
    """``name: value  [source]`` lines for every preprocessing setting of ``spec``."""
    where = spec.provenance
    size = f"{spec.channels}x{spec.height}x{spec.width}"
    rows = [
        ("input", f"{spec.input_name} {size}", where.get("input_shape")),
        ("channel order", spec.channel_order if spec.channels == 3 else "grey", where.get("channel_order")),
        ("mean", _mean_text(spec), where.get("mean")),
        ("scale", f"{spec.scale:g}", where.get("scale")),
        ("resize", spec.resize_mode, where.get("resize_mode")),
    ]
    if spec.dataset_size is not None:
        height, width = spec.dataset_size
        rows.append(("dataset size", f"{width}x{height}", where.get("dataset_size")))
    rows.append(("labels", str(len(spec.labels)), where.get("labels")))
    if score_output is not None:
        rows.append(("scores from", repr(score_output), where.get("score_output")))
    return [f"{name + ':':15}{value}" + _source(source) for name, value, source in rows]


def _source(phrase: str | None) -> str:
    """The bracketed origin; a guess says only "assumed" here (its WARNING line says the rest)."""
    if not phrase:
        return ""
    return "  [assumed, see WARNING]" if phrase.startswith(ASSUMED_PREFIX) else f"  [{phrase}]"
