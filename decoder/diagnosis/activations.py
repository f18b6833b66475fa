"""``dead-layer``: the first layer whose output is broken, from the per-layer statistics.

Only the first broken layer is reported: everything after it inherits the damage, and the
first one is where to look (a NaN weight, an all-zero ReLU, a layer that lost the signal).
"""

from __future__ import annotations

import math

from decoder.diagnosis.findings import Finding
from decoder.diagnosis.forward import Forward

#: A layer whose spread (see LayerStats) falls below this no longer depends on the input.
DEAD_SPREAD = 0.05
#: Inputs needed before "barely depends on the input" is said (two images may just look alike).
MIN_INPUTS = 4


def check_layers(forward: Forward, reference: Forward | None = None) -> list[Finding]:
    """NaN/Inf, all-zero, or input-independent layer outputs (the first of each kind, at most one)."""
    for stats in forward.stats:
        if stats.nonfinite_fraction > 0:
            message = (
                f"layer {stats.name!r} ({stats.type}) outputs NaN or Inf in {100 * stats.nonfinite_fraction:.1f}% of "
                "its values; every later layer inherits them"
            )
            fix = "check that layer's weights (NaN in the caffemodel) and the input blob for NaN/Inf or huge values"
            return [Finding("dead-layer", "error", message, fix, {"layer": stats.name, **stats.to_dict()})]
    for stats in forward.stats:
        if stats.zero_fraction == 1.0:
            message = f"layer {stats.name!r} ({stats.type}) outputs only zeros for every input: the signal is lost"
            fix = "the input drives this layer below zero everywhere (wrong range or mean), or its weights are zero"
            return [Finding("dead-layer", "error", message, fix, {"layer": stats.name, **stats.to_dict()})]
    if math.isnan(forward.input_spread) or forward.input_spread < DEAD_SPREAD or len(forward.scores) < MIN_INPUTS:
        return []  # too few inputs to say a layer ignores them
    for index, stats in enumerate(forward.stats):
        if math.isnan(stats.spread) or stats.spread >= DEAD_SPREAD:
            continue
        healthy = ""
        evidence: dict[str, object] = {"layer": stats.name, "spread": round(stats.spread, 4)}
        if reference is not None and index < len(reference.stats):
            ref = reference.stats[index].spread
            evidence["reference_spread"] = None if math.isnan(ref) else round(ref, 4)
            healthy = f"; with the stated preprocessing of the same images it is {100 * ref:.0f}%"
        message = (
            f"from layer {stats.name!r} ({stats.type}) on, the output barely depends on the input: it varies across "
            f"inputs by {100 * stats.spread:.1f}% of its magnitude (the input itself by "
            f"{100 * forward.input_spread:.0f}%){healthy}"
        )
        fix = "the input's variations are too small for this layer's weights and biases (check the input range)"
        return [Finding("dead-layer", "warning", message, fix, evidence)]
    return []
