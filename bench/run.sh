#!/usr/bin/env bash
# `make bench`: the benchmark suite (turnout vs MLServer, mlflow and a bare ASGI app), then
# the protocol comparison (bench/protocols.py) and gRPC under 16 concurrent streams
# (bench/grpc_streams.py).
# Needs wrk and h2load; installs them with apt-get when missing and running as root.
# Arguments go to bench/suite.py, e.g. `bash bench/run.sh --duration 5 --only turnout,bare`.
set -euo pipefail
cd "$(dirname "$0")/.."

need() {  # need COMMAND PACKAGE
    if ! command -v "$1" >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
        else
            echo "$1 is not installed: run 'sudo apt-get install $2' (or make bench as root)" >&2
            exit 1
        fi
    fi
}
need wrk wrk
need h2load nghttp2-client

.venv/bin/python -m bench.suite "$@"
# Rows/s over OIP JSON HTTP, binary HTTP and gRPC, turnout and MLServer (~2 min).
.venv/bin/python -m bench.protocols
# Routed turnout over gRPC at 16 concurrent streams against MLServer's gRPC (~1 min).
exec .venv/bin/python -m bench.grpc_streams
