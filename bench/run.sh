#!/usr/bin/env bash
# `make bench`: the benchmark suite (turnout vs MLServer, mlflow and a bare ASGI app), then
# the protocol comparison (bench/protocols.py).
# Needs wrk; installs it with apt-get when missing and running as root. Arguments go to
# bench/suite.py, e.g. `bash bench/run.sh --duration 5 --only turnout,bare`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq wrk >/dev/null
    else
        echo "wrk is not installed: run 'sudo apt-get install wrk' (or make bench as root)" >&2
        exit 1
    fi
fi

.venv/bin/python -m bench.suite "$@"
# One more step: rows/s over OIP JSON HTTP, binary HTTP and gRPC, turnout and MLServer (~2 min).
exec .venv/bin/python -m bench.protocols
