"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`).

`grpc_predict_v2.proto` is the protocol's own definition; the `*_pb2*` modules beside it are
generated from it by `scripts/gen-grpc.sh` (never edited by hand).
"""

import os

# grpc's own DNS resolver (c-ares) reads /etc/resolv.conf as it starts, though a server
# bound to an address never resolves a name; the system resolver does nothing of the kind
# for numeric addresses. Set before grpc is first imported (this package's modules do).
os.environ.setdefault("GRPC_DNS_RESOLVER", "native")
