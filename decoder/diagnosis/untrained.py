"""``untrained-weights``: a caffemodel whose weights never left their initialisation.

Caffe fills a new net's blobs from the prototxt's fillers: biases with a constant (0 by
default, 0.1 or 1 in some AlexNet-style nets), weights with independent random draws,
``xavier`` (uniform in +-sqrt(3/n), n = fan-in by default), ``msra`` (normal, std
sqrt(2/n)) or ``gaussian`` with a round std (0.01, 0.001...). Training moves every bias
off its constant and gives the weights structure (smooth filters, heavy tails), so three
signs tell an untrained net:

- every bias of a layer identical to the others of that layer (the constant filler);
- weights distributed like a filler: uniform with a hard edge at sqrt(3) standard
  deviations, or normal (no excess kurtosis) at a filler's std, with neighbouring weights
  uncorrelated (no spatial structure);
- probabilities (nearly) uniform for every input: small random weights give tiny logits;
  or scores that do not move whatever the input, at the stated scale, x1/255 or x255.

Biases are read from the ONNX graph, where an InnerProduct with ``bias_term: false``
carries a zero bias of our own making: so constant biases alone only make a warning; with
filler-like weights or uniform outputs they make an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from decoder.diagnosis.findings import Finding
from decoder.diagnosis.forward import Forward
from decoder.diagnosis.outputs import CONSTANT_SPREAD, logit_spread

if TYPE_CHECKING:
    import onnx

#: Standard deviations Caffe prototxts give ``gaussian`` fillers.
ROUND_STDS = (0.1, 0.05, 0.01, 0.005, 0.001, 0.0005, 0.0001)
#: Weight tensors smaller than this say too little about their distribution.
MIN_WEIGHTS = 64
#: Probabilities within this factor of each other for every input are "uniform".
UNIFORM_RATIO = math.e


@dataclass(frozen=True)
class WeightTensor:
    """One layer's weight blob and its bias (None without one), as stored in the .onnx."""

    layer: str
    weight: np.ndarray  # (outputs, fan-in...) as Conv / Gemm(transB=1) store it
    bias: np.ndarray | None


def weight_tensors(model: onnx.ModelProto, layer_of_node: dict[str, str]) -> list[WeightTensor]:
    """The weight and bias initializers of every Conv, ConvTranspose and Gemm/MatMul node, in graph order."""
    from onnx import numpy_helper

    constants = {init.name: init for init in model.graph.initializer}
    adds = {node.input[0]: node for node in model.graph.node if node.op_type == "Add" and len(node.input) == 2}
    out: list[WeightTensor] = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        if node.input[1] not in constants:
            continue
        weight = numpy_helper.to_array(constants[node.input[1]]).astype(np.float64)
        if node.op_type == "MatMul" or (node.op_type == "Gemm" and not _trans_b(node)):
            weight = weight.T  # (outputs, fan-in) like Caffe's InnerProduct blob
        if node.op_type == "ConvTranspose":
            weight = weight.swapaxes(0, 1)
        bias_name = node.input[2] if len(node.input) > 2 else ""
        follower = adds.get(node.output[0])
        if not bias_name and node.op_type == "MatMul" and follower is not None:
            bias_name = follower.input[1]
        bias = numpy_helper.to_array(constants[bias_name]).astype(np.float64) if bias_name in constants else None
        out.append(WeightTensor(layer_of_node.get(node.name, node.name), weight, bias))
    return out


def _trans_b(node: onnx.NodeProto) -> bool:
    return any(attr.name == "transB" and attr.i == 1 for attr in node.attribute)


def filler_like(weight: np.ndarray) -> str:
    """The filler a weight blob looks drawn from ("xavier", "gaussian std 0.01", ...), or "" when it looks trained."""
    flat = weight.reshape(-1)
    n = flat.size
    if n < MIN_WEIGHTS:
        return ""
    std = float(flat.std())
    if std == 0.0 or not math.isfinite(std):
        return ""
    mean = float(flat.mean())
    if abs(mean) > 0.1 * std + 4 * std / math.sqrt(n):
        return ""
    z = (flat - mean) / std
    kurtosis = float(np.mean(z**4)) - 3.0
    kurtosis_noise = 4 * math.sqrt(24.0 / n)
    if _neighbour_correlation(weight) > 0.1 + 4 / math.sqrt(n):
        return ""  # spatially structured: trained filters are smooth
    fan_in = int(np.prod(weight.shape[1:])) if weight.ndim > 1 else n
    fan_out = int(weight.shape[0] * np.prod(weight.shape[2:])) if weight.ndim > 1 else n
    edge = float(np.abs(z).max())
    # Uniform: its largest weight sits at sqrt(3) stds (give or take the sample std's own error, ~sqrt(0.2/n)).
    hard_edge = abs(edge / math.sqrt(3) - 1) <= 3 * math.sqrt(0.2 / n)
    if abs(kurtosis + 1.2) <= max(0.1, kurtosis_noise) and hard_edge:
        return "xavier (uniform)"
    if abs(kurtosis) > max(0.3, kurtosis_noise):
        return ""
    for target in ROUND_STDS:
        if abs(std - target) <= 0.05 * target:
            return f"gaussian std {target:g}"
    for name, value in (
        ("xavier/msra std sqrt(1/fan-in)", 1 / fan_in),
        ("msra std sqrt(2/fan-in)", 2 / fan_in),
        ("msra std sqrt(2/fan-out)", 2 / fan_out),
        ("xavier std sqrt(1/fan-out)", 1 / fan_out),
        ("xavier std sqrt(2/(fan-in+fan-out))", 2 / (fan_in + fan_out)),
    ):
        if abs(std - math.sqrt(value)) <= 0.05 * math.sqrt(value):
            return name
    return ""


def _neighbour_correlation(weight: np.ndarray) -> float:
    """Correlation of each weight with its neighbour along the last axis (filters: along a row)."""
    if weight.ndim < 2 or weight.shape[-1] < 2:
        return 0.0
    left = weight[..., :-1].reshape(-1)
    right = weight[..., 1:].reshape(-1)
    left, right = left - left.mean(), right - right.mean()
    norm = float(np.linalg.norm(left) * np.linalg.norm(right))
    return float(left @ right / norm) if norm else 0.0


def constant_biases(tensors: list[WeightTensor]) -> list[tuple[str, float]]:
    """(layer, value) for every bias blob of 2+ elements; empty unless ALL of them are constant."""
    biases = [(t.layer, t.bias) for t in tensors if t.bias is not None and t.bias.size >= 2]
    if not biases or any(float(np.ptp(b)) != 0.0 for _, b in biases):
        return []
    return [(layer, float(b.reshape(-1)[0])) for layer, b in biases]


def check_untrained(tensors: list[WeightTensor], forwards: list[Forward]) -> list[Finding]:
    """``untrained-weights`` from the blobs and from what the net outputs (see the module docstring)."""
    if not tensors:
        return []
    constant = constant_biases(tensors)
    fillers = [(t.layer, filler_like(t.weight)) for t in tensors if t.weight.size >= MIN_WEIGHTS]
    random_layers = [(layer, kind) for layer, kind in fillers if kind]
    # One blob is too little to call a whole net random (a small test net's only big layer).
    all_random = len(fillers) >= 2 and len(random_layers) == len(fillers)
    ratios = [_max_ratio(f.probabilities) for f in forwards if f.probabilities.shape[1] >= 2]
    uniform = bool(ratios) and max(ratios) <= UNIFORM_RATIO
    spreads = [logit_spread(f.logits) for f in forwards if f.logits.shape[0] >= 2 and f.logits.shape[1] >= 2]
    independent = bool(spreads) and max(spreads) < CONSTANT_SPREAD
    signs: list[str] = []
    if constant:
        values = sorted({value for _, value in constant})
        shown = ", ".join(f"{v:g}" for v in values[:3])
        signs.append(f"every bias of each of the {len(constant)} layers with biases is one constant ({shown})")
    if random_layers:
        shown = ", ".join(f"{layer} ({kind})" for layer, kind in random_layers[:3])
        more = f" and {len(random_layers) - 3} more" if len(random_layers) > 3 else ""
        signs.append(
            f"{len(random_layers)} of {len(fillers)} weight blobs look like random initialisation, unstructured: "
            f"{shown}{more}"
        )
    if uniform:
        signs.append(f"every input gets nearly uniform probabilities (within a factor {max(ratios):.2f})")
    if independent:
        signs.append(
            f"the scores do not depend on the input at any scale tried (logit spread at most {100 * max(spreads):.1f}%)"
        )
    evidence: dict[str, object] = {
        "constant_bias_layers": [layer for layer, _ in constant],
        "filler_like_layers": [layer for layer, _ in random_layers],
        "weight_layers": len(fillers),
        "max_probability_ratio": round(max(ratios), 4) if ratios else None,
        "input_independent": independent,
    }
    symptom = uniform or independent
    strong = (constant and (bool(random_layers) or symptom)) or (all_random and symptom)
    if strong:
        severity = "error"
    elif constant or all_random:
        severity = "warning"
    else:
        return []
    message = "the weights look never trained: " + "; ".join(signs)
    fix = (
        "use the caffemodel saved after training (e.g. DIGITS's snapshot_iter_N.caffemodel with the largest N), "
        "not one written before the first iteration; no preprocessing can make these weights classify"
    )
    return [Finding("untrained-weights", severity, message, fix, evidence)]


def _max_ratio(probabilities: np.ndarray) -> float:
    return float(np.max(probabilities.max(axis=1) / np.maximum(probabilities.min(axis=1), 1e-300)))
