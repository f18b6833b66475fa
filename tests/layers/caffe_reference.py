"""Numpy re-implementations of upstream Caffe forward passes, for where OpenCV cannot judge.

Each function transcribes the CPU forward pass of the named BVLC Caffe source file
(github.com/BVLC/caffe, src/caffe/layers/...), loops and all, in float32 where Caffe
computes in ``Dtype = float``. They are the authority only where OpenCV's Caffe importer
lacks the layer or departs from Caffe; every test that uses one says why.
"""

from __future__ import annotations

import math

import numpy as np

FLT_MAX = np.float32(3.4028235e38)


def pooled_size(size: int, kernel: int, stride: int, pad: int, ceil_mode: bool, any_pad: bool) -> int:
    """pooling_layer.cpp Reshape: ceil (or floor, round_mode FLOOR), then the last-window clip."""
    rounding = math.ceil if ceil_mode else math.floor
    out = int(rounding(float(size + 2 * pad - kernel) / stride)) + 1
    if any_pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def pool(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    method: str,
    ceil_mode: bool = True,
) -> np.ndarray:
    """pooling_layer.cpp Forward_cpu, MAX and AVE branches."""
    n, c, height, width = x.shape
    any_pad = bool(pad[0] or pad[1])
    out_h = pooled_size(height, kernel[0], stride[0], pad[0], ceil_mode, any_pad)
    out_w = pooled_size(width, kernel[1], stride[1], pad[1], ceil_mode, any_pad)
    top = np.zeros((n, c, out_h, out_w), np.float32)
    for ph in range(out_h):
        for pw in range(out_w):
            hstart, wstart = ph * stride[0] - pad[0], pw * stride[1] - pad[1]
            if method == "MAX":
                hend, wend = min(hstart + kernel[0], height), min(wstart + kernel[1], width)
                hstart, wstart = max(hstart, 0), max(wstart, 0)
                window = x[:, :, hstart:hend, wstart:wend].reshape(n, c, -1)
                top[:, :, ph, pw] = window.max(axis=2) if window.shape[2] else -FLT_MAX
            else:
                hend = min(hstart + kernel[0], height + pad[0])
                wend = min(wstart + kernel[1], width + pad[1])
                pool_size = (hend - hstart) * (wend - wstart)
                hstart, wstart = max(hstart, 0), max(wstart, 0)
                hend, wend = min(hend, height), min(wend, width)
                total = x[:, :, hstart:hend, wstart:wend].astype(np.float64).sum(axis=(2, 3))
                top[:, :, ph, pw] = total / pool_size
    return top


def argmax(x: np.ndarray, top_k: int = 1, out_max_val: bool = False, axis: int | None = None) -> np.ndarray:
    """argmax_layer.cpp: (value, index) pairs sorted by std::greater (ties: larger index first)."""
    if axis is None:
        flat = x.reshape(x.shape[0], -1)
        rank = max(x.ndim, 3)
        shape = [x.shape[0], 2 if out_max_val else 1, top_k] + [1] * (rank - 3)
        top = np.zeros((x.shape[0], 2 if out_max_val else 1, top_k), np.float32)
        for i, row in enumerate(flat):
            pairs = sorted(((float(v), j) for j, v in enumerate(row)), reverse=True)[:top_k]
            top[i, 0] = [j for _, j in pairs]
            if out_max_val:
                top[i, 1] = [v for v, _ in pairs]
        return top.reshape(shape)
    moved = np.moveaxis(x, axis, -1)
    result = np.zeros((*moved.shape[:-1], top_k), np.float32)
    for index in np.ndindex(*moved.shape[:-1]):
        pairs = sorted(((float(v), j) for j, v in enumerate(moved[index])), reverse=True)[:top_k]
        result[index] = [v for v, _ in pairs] if out_max_val else [j for _, j in pairs]
    return np.moveaxis(result, -1, axis)


def batch_norm(
    x: np.ndarray,
    mean: np.ndarray | None,
    var: np.ndarray | None,
    eps: float,
    scale: np.ndarray | None = None,
    bias: np.ndarray | None = None,
) -> np.ndarray:
    """batch_norm_layer.cpp Forward_cpu; ``mean``/``var`` None = the batch's own statistics."""
    axes = (0, *range(2, x.ndim))
    shape = [1, x.shape[1]] + [1] * (x.ndim - 2)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes) if mean is None else mean
    centred = x64 - np.reshape(mean, shape)
    var = (centred**2).mean(axis=axes) if var is None else var
    top = centred / np.sqrt(np.reshape(var, shape).astype(np.float64) + np.float32(eps))
    if scale is not None:
        top = top * np.reshape(scale, shape) + np.reshape(bias, shape)
    return top.astype(np.float32)


def deconvolution(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: tuple[int, int],
    pad: tuple[int, int],
    dilation: tuple[int, int],
    group: int = 1,
) -> np.ndarray:
    """deconv_layer.cpp: col2im of W^T x (every input cell scatters its kernel), then crop the pad.

    Output size: stride * (in - 1) + dilation * (kernel - 1) + 1 - 2 * pad.
    """
    n, channels, height, width = x.shape
    _, out_per_group, kh, kw = weight.shape
    in_per_group = channels // group
    full_h = stride[0] * (height - 1) + dilation[0] * (kh - 1) + 1
    full_w = stride[1] * (width - 1) + dilation[1] * (kw - 1) + 1
    full = np.zeros((n, out_per_group * group, full_h, full_w), np.float64)
    for g in range(group):
        xg = x[:, g * in_per_group : (g + 1) * in_per_group].astype(np.float64)
        wg = weight[g * in_per_group : (g + 1) * in_per_group].astype(np.float64)
        for ki in range(kh):
            for kj in range(kw):
                # (n, cin, h, w) x (cin, cout) -> (n, cout, h, w), placed at the kernel tap's offset.
                contribution = np.einsum("nchw,co->nohw", xg, wg[:, :, ki, kj])
                rows = slice(ki * dilation[0], ki * dilation[0] + stride[0] * (height - 1) + 1, stride[0])
                cols = slice(kj * dilation[1], kj * dilation[1] + stride[1] * (width - 1) + 1, stride[1])
                full[:, g * out_per_group : (g + 1) * out_per_group, rows, cols] += contribution
    top = full[:, :, pad[0] : full_h - pad[0], pad[1] : full_w - pad[1]]
    if bias is not None:
        top = top + bias.reshape(1, -1, 1, 1)
    return top.astype(np.float32)
