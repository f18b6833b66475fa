"""The committed caffe_pb2.py is exactly what scripts/generate_proto.py makes from caffe.proto,
and the schema carries the field numbers real Caffe files use."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from decoder.caffe_proto import caffe_pb2

PROTO_DIR = Path(__file__).resolve().parents[1] / "decoder" / "caffe_proto"


def test_generated_module_is_reproducible(tmp_path: Path) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc", reason="grpcio-tools (test extra) is not installed")
    shutil.copy(PROTO_DIR / "caffe.proto", tmp_path / "caffe.proto")
    assert protoc.main(["protoc", f"--proto_path={tmp_path}", f"--python_out={tmp_path}", "caffe.proto"]) == 0
    assert (tmp_path / "caffe_pb2.py").read_text() == (PROTO_DIR / "caffe_pb2.py").read_text(), (
        "run: python scripts/generate_proto.py"
    )


@pytest.mark.parametrize(
    ("message", "field", "number"),
    [
        (caffe_pb2.NetParameter, "layer", 100),
        (caffe_pb2.NetParameter, "layers", 2),
        (caffe_pb2.NetParameter, "input_dim", 4),
        (caffe_pb2.LayerParameter, "convolution_param", 106),
        (caffe_pb2.LayerParameter, "batch_norm_param", 139),
        (caffe_pb2.LayerParameter, "permute_param", 202),
        (caffe_pb2.V1LayerParameter, "blobs", 6),
        (caffe_pb2.BlobProto, "shape", 7),
        (caffe_pb2.PoolingParameter, "round_mode", 13),
        (caffe_pb2.CropParameter, "offset", 2),
    ],
)
def test_field_numbers_are_caffes(message: type, field: str, number: int) -> None:
    assert message.DESCRIPTOR.fields_by_name[field].number == number
