"""Data-moving layers: Flatten, Concat, Slice, Split, Reshape, Crop, Permute, Silence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from decoder.caffe_proto import caffe_pb2
from tests.caffe_nets import NetBuilder, assert_matches_opencv, assert_matches_reference

SHAPE = (1, 6, 4, 5)


def _net(type_: str, shape=SHAPE, tops=("out",), **params) -> NetBuilder:
    net = NetBuilder(type_.lower())
    data = net.input("data", shape)
    net.layer(type_, data, list(tops), name="layer", **params)
    return net


@pytest.mark.parametrize(
    "param", [{}, {"axis": 2}, {"axis": 1, "end_axis": 2}, {"axis": -2, "end_axis": -1}, {"axis": 2, "end_axis": 2}]
)
def test_flatten(tmp_path: Path, param: dict) -> None:
    assert_matches_opencv(_net("Flatten", flatten_param=param), tmp_path)


@pytest.mark.parametrize(
    ("axis", "shapes"),
    [
        (1, [(1, 2, 4, 5), (1, 3, 4, 5), (1, 1, 4, 5)]),
        (2, [(1, 3, 2, 5), (1, 3, 4, 5)]),
        (3, [(1, 3, 4, 1), (1, 3, 4, 6)]),
        (-1, [(1, 3, 4, 2), (1, 3, 4, 3)]),
        (1, [(1, 4), (1, 6)]),
    ],
)
def test_concat(tmp_path: Path, axis: int, shapes: list) -> None:
    net = NetBuilder("concat")
    bottoms = [net.input(f"in{i}", s) for i, s in enumerate(shapes)]
    net.layer("Concat", bottoms, name="out", concat_param={"axis": axis})
    assert_matches_opencv(net, tmp_path)


def test_concat_legacy_concat_dim(tmp_path: Path) -> None:
    """concat_dim (V1 nets) picks the axis in concat_layer.cpp; OpenCV 4 ignores it and joins
    along axis 1, so the Caffe rule is the authority."""
    net = NetBuilder("concat")
    bottoms = [net.input("a", (1, 2, 3, 3)), net.input("b", (1, 2, 3, 3))]
    net.layer("Concat", bottoms, name="out", concat_param={"concat_dim": 2})
    assert_matches_reference(net, tmp_path, lambda feed: {"out": np.concatenate([feed["a"], feed["b"]], axis=2)})


@pytest.mark.parametrize(
    ("param", "tops"),
    [
        ({"axis": 1, "slice_point": [2, 5]}, 3),
        ({"axis": 3, "slice_point": [1]}, 2),
        ({"axis": -2, "slice_point": [3]}, 2),
        ({"axis": 1, "slice_point": [3, 4, 5]}, 4),  # the MTCNN det4 pattern
    ],
)
def test_slice(tmp_path: Path, param: dict, tops: int) -> None:
    net = _net("Slice", tops=[f"part{i}" for i in range(tops)], slice_param=param)
    assert_matches_opencv(net, tmp_path)


@pytest.mark.parametrize(("param", "tops"), [({"axis": 1}, 3), ({"axis": 3}, 5), ({"slice_dim": 2}, 2)])
def test_slice_equal_parts(tmp_path: Path, param: dict, tops: int) -> None:
    """Without slice_point, slice_layer.cpp cuts the axis into len(top) equal parts, and the
    legacy slice_dim names the axis. OpenCV 4 fails on both, so Caffe's rule is the authority."""
    net = _net("Slice", tops=[f"part{i}" for i in range(tops)], slice_param=param)
    axis = param.get("axis", param.get("slice_dim"))

    def reference(feed: dict) -> dict:
        return {f"part{i}": part for i, part in enumerate(np.split(feed["data"], tops, axis=axis))}

    assert_matches_reference(net, tmp_path, reference)


def test_split_feeds_two_branches(tmp_path: Path) -> None:
    net = NetBuilder("split")
    data = net.input("data", SHAPE)
    net.layer("Split", data, ["a", "b"], name="split")
    net.layer("ReLU", "a", "relu", name="relu")
    net.layer("Sigmoid", "b", "sigmoid", name="sigmoid")
    net.layer("Eltwise", ["relu", "sigmoid"], "out", name="out", eltwise_param={"operation": "PROD"})
    assert_matches_opencv(net, tmp_path)


@pytest.mark.parametrize(
    "param",
    [
        {"shape": {"dim": [0, -1]}},
        {"shape": {"dim": [0, 3, 2, 20]}},
        {"shape": {"dim": [0, 0, -1]}},
        {"shape": {"dim": [0, 2, 3, 0, 4]}},  # a 0 that copies input axis 3 at output axis 3
        {"shape": {"dim": [-1, 5]}, "axis": 2},
        {"shape": {"dim": [2, 3]}, "axis": 1, "num_axes": 1},
        {"shape": {"dim": [0, 0, 0, 0]}},
    ],
)
def test_reshape(tmp_path: Path, param: dict) -> None:
    assert_matches_opencv(_net("Reshape", reshape_param=param), tmp_path)


@pytest.mark.parametrize(
    ("param", "shape"),
    [
        ({"shape": {"dim": [1, 1]}, "axis": -1, "num_axes": 0}, (6, 4, 5, 1, 1)),  # append axes
        ({"shape": {"dim": [20]}, "axis": -3}, (6, 20)),  # replace the last two
    ],
)
def test_reshape_negative_axis(tmp_path: Path, param: dict, shape: tuple[int, ...]) -> None:
    """A negative axis starts at axis + rank + 1 (reshape_layer.cpp: -1 is "after the last");
    OpenCV 4 rejects negative axes, so Caffe's rule is the authority."""
    net = _net("Reshape", reshape_param=param)
    assert_matches_reference(net, tmp_path, lambda feed: {"out": feed["data"].reshape(-1, *shape)})


def test_reshape_flatten_all(tmp_path: Path) -> None:
    """dim: -1 alone folds the batch in too (Caffe allows it): that would merge images, so the
    net keeps its declared batch of 1 and each image gets its own flattened row."""
    net = _net("Reshape", reshape_param={"shape": {"dim": [-1]}})
    ours = assert_matches_reference(net, tmp_path, lambda feed: {"out": feed["data"].reshape(-1)})
    assert ours["out"].shape == (3, int(np.prod(SHAPE)))


@pytest.mark.parametrize("axis", [1, 2, 3, -1])
def test_crop(tmp_path: Path, axis: int) -> None:
    net = NetBuilder("crop")
    data = net.input("data", (1, 6, 7, 9))
    reference = net.input("like", (1, 4, 5, 6))
    net.layer("Crop", [data, reference], name="out", crop_param={"axis": axis})
    assert_matches_opencv(net, tmp_path)


@pytest.mark.skipif(
    "offset" not in caffe_pb2.CropParameter.DESCRIPTOR.fields_by_name,
    reason="decoder/caffe_proto lacks CropParameter.offset (field 2 of upstream caffe.proto)",
)
@pytest.mark.parametrize(("axis", "offset"), [(2, [1]), (2, [1, 2]), (1, [2, 0, 3])])
def test_crop_offset(tmp_path: Path, axis: int, offset: list[int]) -> None:
    net = NetBuilder("crop")
    data = net.input("data", (1, 6, 7, 9))
    reference = net.input("like", (1, 4, 5, 6))
    net.layer("Crop", [data, reference], name="out", crop_param={"axis": axis, "offset": offset})
    assert_matches_opencv(net, tmp_path)


@pytest.mark.parametrize("order", [[0, 2, 3, 1], [0, 3, 1, 2], [0, 1, 3, 2], [0, 1, 2, 3]])
def test_permute(tmp_path: Path, order: list[int]) -> None:
    assert_matches_opencv(_net("Permute", permute_param={"order": order}), tmp_path)


def test_permute_partial_order(tmp_path: Path) -> None:
    """SSD Caffe's permute_layer.cpp appends the axes ``order`` leaves out, in their original
    order; OpenCV 4 requires a full order, so that rule is the authority."""
    net = _net("Permute", permute_param={"order": [0, 2]})
    assert_matches_reference(net, tmp_path, lambda feed: {"out": feed["data"].transpose(0, 2, 1, 3)})


def test_silence_hides_a_blob(tmp_path: Path) -> None:
    """A silenced blob is not a net output; the other branch is."""
    from tests.caffe_nets import convert_files

    net = NetBuilder("silence")
    data = net.input("data", SHAPE)
    net.layer("Split", data, ["a", "b"], name="split")
    net.layer("Silence", "a", [], name="silence")
    net.layer("ReLU", "b", "out", name="relu")
    files = net.write(tmp_path)
    _, outputs = convert_files(files)
    assert outputs == ["out"]
    assert_matches_opencv(files, tmp_path, inputs=[net.random_inputs(2)])
    np.testing.assert_equal(len(outputs), 1)
