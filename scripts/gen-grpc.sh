#!/usr/bin/env bash
# Regenerates the OIP gRPC stubs in src/turnout/gateway/grpc/ from grpc_predict_v2.proto.
# Needs the dev extras (grpcio-tools): .venv/bin/pip install -e '.[dev]'
#
# The generated messages are registered in a descriptor pool of their own rather than
# protobuf's default one: tritonclient.grpc (and any other copy of the protocol) defines
# the same `inference.*` names, and two files defining one name in the default pool make
# the second import fail. Nothing else in the generated code changes.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../src"
PYTHON="${PYTHON:-../.venv/bin/python}"
proto=turnout/gateway/grpc/grpc_predict_v2.proto

"$PYTHON" -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. "$proto"
sed -i 's/^DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(/DESCRIPTOR = _descriptor_pool.DescriptorPool().AddSerializedFile(/' \
    turnout/gateway/grpc/grpc_predict_v2_pb2.py
grep -q '_descriptor_pool.DescriptorPool().AddSerializedFile' turnout/gateway/grpc/grpc_predict_v2_pb2.py \
    || { echo "gen-grpc: the private descriptor pool edit did not apply" >&2; exit 1; }
echo "regenerated: $(ls turnout/gateway/grpc/grpc_predict_v2_pb2*)"
