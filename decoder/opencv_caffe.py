"""OpenCV 4's Caffe importer as an independent reference, for `convert --verify` and `compare`.

Three things every caller needs, kept in one place so both commands say the same:

- whether the importer exists: ``cv2.dnn.readNetFromCaffe`` is in OpenCV 4 and was removed
  in 5.0; only then is the message "OpenCV 4 is not installed" with the pip line;
- the net OpenCV is fed: the deploy net as `decode convert` sees it. Layers that only exist
  for training (``SoftmaxWithLoss``, ``Accuracy``, data layers) and layers excluded from
  the TEST phase are dropped, and so are header inputs no remaining layer reads (a
  ``label`` blob), exactly as conversion drops them; OpenCV would otherwise fail on a
  loss layer that has no label to read. The pruned net is written to a temporary prototxt
  for the duration of the load; the caffemodel is read as it is (weights match by name);
- OpenCV's own reason when it refuses the files, trimmed to its meaningful part
  (``OpenCV(4.14.0) /io/.../net_impl.cpp:570: error: (-215:Assertion failed) ...`` becomes
  ``(-215:Assertion failed) ...``).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from decoder.caffe_proto import caffe_pb2
from decoder.errors import DecoderError

PathLike = str | os.PathLike[str]

#: What to install when the importer is missing (the last release line that has it).
PIP_LINE = "pip install 'opencv-python-headless>=4.8,<5'"

# "OpenCV(4.14.0) /path/file.cpp:570: error: (-215:Assertion failed) inp.total() in function 'f'"
_LOCATION = re.compile(r"^OpenCV\([^)]*\)\s+\S+:\d+:\s*error:\s*")


class OpenCVMissing(DecoderError):
    """The reference cannot run at all: no cv2, or a cv2 without the Caffe importer (OpenCV 5)."""


@dataclass(frozen=True)
class OpenCVNet:
    """A net loaded by ``readNetFromCaffe``, and what it was fed."""

    net: Any
    inputs: tuple[str, ...]  # input blobs of the (pruned) net, in declaration order
    dropped: tuple[str, ...]  # layers and inputs left out of the net OpenCV saw
    description: str
    prototxt: str  # the file named in errors


def require_opencv_caffe() -> Any:
    """The ``cv2`` module when it has OpenCV 4's Caffe importer; :class:`OpenCVMissing` otherwise."""
    try:
        import cv2
    except ImportError as exc:
        raise OpenCVMissing(f"OpenCV 4 is not installed (import cv2 failed: {exc}); {PIP_LINE}") from None
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromCaffe"):
        version = getattr(cv2, "__version__", "?")
        raise OpenCVMissing(
            f"OpenCV 4 is not installed: OpenCV {version} has no cv2.dnn.readNetFromCaffe (removed in 5.0); {PIP_LINE}"
        )
    return cv2


def opencv_reason(exc: BaseException) -> str:
    """OpenCV's error in one line, without the version and source-file prefix."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    located = [line for line in lines if _LOCATION.match(line)]
    line = located[-1] if located else lines[-1]
    return _LOCATION.sub("", line)[:300]


@contextlib.contextmanager
def deploy_for_opencv(
    prototxt: PathLike, caffemodel: PathLike, input_shape: tuple[int, int, int] | None = None
) -> Iterator[Path]:
    """``prototxt`` itself when it is a deploy net, else its deploy net in a temporary file.

    A train/test net whose images come from a data layer declares no input, so OpenCV
    could not size it: here it gets the input conversion worked out (``input_shape``, the
    data layer's size, the weights' channels), exactly the net `decode convert` converted.
    """
    from decoder.caffe_io import deploy_prototxt, load_net

    net = load_net(prototxt, caffemodel, input_shape=input_shape)
    if not net.dropped and input_shape is None:
        yield Path(prototxt)
        return
    with tempfile.TemporaryDirectory(prefix="decoder-opencv-") as folder:
        deploy = Path(folder) / f"{Path(prototxt).stem}.deploy.prototxt"
        deploy.write_text(deploy_prototxt(net), encoding="utf-8")
        yield deploy


def load_opencv_net(prototxt: PathLike, caffemodel: PathLike, shown: PathLike | None = None) -> OpenCVNet:
    """``readNetFromCaffe`` of the deploy net (training-only layers dropped) and the caffemodel.

    ``shown``: the file to name in messages when ``prototxt`` is a temporary deploy net.
    """
    cv2 = require_opencv_caffe()
    shown = prototxt if shown is None else shown
    proto, inputs, dropped = pruned_deploy_net(prototxt)
    try:
        if dropped:
            with tempfile.TemporaryDirectory(prefix="decoder-opencv-") as folder:
                pruned = Path(folder) / Path(prototxt).name
                pruned.write_text(text_format.MessageToString(proto), encoding="utf-8")
                net = cv2.dnn.readNetFromCaffe(str(pruned), str(caffemodel))
        else:
            net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    except cv2.error as exc:
        raise DecoderError(f"OpenCV {cv2.__version__} refused the Caffe files: {opencv_reason(exc)}", shown) from None
    net.enableFusion(False)  # every layer's own output, not a fused one
    name = Path(shown).name + (f" without {', '.join(dropped)}" if dropped else "")
    description = f"OpenCV {cv2.__version__} readNetFromCaffe({name}, {Path(caffemodel).name})"
    return OpenCVNet(net, tuple(inputs), tuple(dropped), description, str(shown))


def forward(loaded: OpenCVNet, feeds: dict[str, Any], names: Sequence[str]) -> list[Any]:
    """OpenCV's outputs of the layers ``names``; its refusal as a one-line DecoderError."""
    import cv2

    try:
        for name, blob in feeds.items():
            loaded.net.setInput(blob, name)
        return list(loaded.net.forward(list(names)))
    except cv2.error as exc:
        message = f"OpenCV {cv2.__version__} refused to run the Caffe net: {opencv_reason(exc)}"
        raise DecoderError(message, loaded.prototxt) from None


def pruned_deploy_net(prototxt: PathLike) -> tuple[caffe_pb2.NetParameter, list[str], list[str]]:
    """The prototxt without training-only / label-reading / non-TEST layers and unread header inputs.

    Returns the (possibly unchanged) NetParameter, its remaining header + Input-layer input
    names, and the names of what was dropped (empty: feed the original file as it is). The
    net keeps its own format (V1 ``layers`` stay V1); V0 nets are returned unchanged.
    """
    from decoder.caffe_io import layer_in_phase, prune_to_deploy, read_prototxt, upgrade_v1_layer

    proto = read_prototxt(prototxt)
    legacy = bool(proto.layers)
    if legacy and any(v1.HasField("layer") for v1 in proto.layers):
        return proto, list(proto.input), []  # V0: nothing of that age carries loss layers in a deploy net
    entries = list(proto.layers) if legacy else list(proto.layer)
    upgraded = [upgrade_v1_layer(v1) for v1 in entries] if legacy else entries
    # The same rule as conversion (caffe_io.prune_to_deploy): training-only layers and whatever reads labels.
    kept_layers, _ = prune_to_deploy([layer for layer in upgraded if layer_in_phase(layer)])
    kept_ids = {id(layer) for layer in kept_layers}
    keep = [id(layer) in kept_ids for layer in upgraded]
    dropped = [layer.name or layer.type for layer, kept in zip(upgraded, keep, strict=True) if not kept]
    read = {bottom for layer, kept in zip(upgraded, keep, strict=True) if kept for bottom in layer.bottom}
    kept_entries = [entry for entry, kept in zip(entries, keep, strict=True) if kept]

    pruned = caffe_pb2.NetParameter()
    pruned.CopyFrom(proto)
    field = pruned.layers if legacy else pruned.layer
    del field[:]
    field.extend(kept_entries)
    names = list(proto.input)
    used = [index for index, name in enumerate(names) if name in read]
    if len(used) < len(names):
        dropped += [names[i] for i in range(len(names)) if i not in used]
        del pruned.input[:]
        pruned.input.extend(names[i] for i in used)
        if len(proto.input_shape) == len(names) and len(names) > 1:
            del pruned.input_shape[:]
            pruned.input_shape.extend(proto.input_shape[i] for i in used)
        if len(proto.input_dim) == 4 * len(names):
            del pruned.input_dim[:]
            pruned.input_dim.extend(d for i in used for d in proto.input_dim[4 * i : 4 * i + 4])
    inputs = list(pruned.input) + [top for layer in upgraded if layer.type == "Input" for top in layer.top]
    return (pruned if dropped else proto), inputs, dropped
