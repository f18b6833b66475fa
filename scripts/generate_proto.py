"""Regenerate decoder/caffe_proto/caffe_pb2.py from caffe.proto.

Needs the dev extra (grpcio-tools, which bundles protoc). The generated module is
committed so that users never need protoc; run this after editing caffe.proto and
commit both files together. Output is deterministic for a given grpcio-tools version.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

PROTO_DIR = Path(__file__).resolve().parent.parent / "decoder" / "caffe_proto"


def main() -> int:
    status = protoc.main(
        ["protoc", f"--proto_path={PROTO_DIR}", f"--python_out={PROTO_DIR}", str(PROTO_DIR / "caffe.proto")]
    )
    if status != 0:
        print("protoc failed", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
