"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`).

`grpc_predict_v2.proto` is the protocol's own definition; the `*_pb2*` modules beside it are
generated from it by `scripts/gen-grpc.sh` (never edited by hand).
"""
