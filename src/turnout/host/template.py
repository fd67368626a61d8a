"""The fork server: a warm process that runners are forked from, in milliseconds.

It imports the common libraries once; a flavor's library (scikit-learn, onnxruntime, ...) is
imported the first time a runner for that flavor is asked for, so a node never imports what
it never serves. The supervisor talks to it over stdin/stdout: `fork` requests in, the new
pid and every child's exit status out. Runners share its pages until they write them.

Usage (by the supervisor): python -m turnout.host.template
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import select
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import numpy  # noqa: F401  (imported once here, shared by every runner)

from turnout.host import runner, wire
from turnout.registry.flavors import flavor_module

REAP_INTERVAL_S = 0.1


IN, OUT = 0, 1


def _send(header: dict[str, Any]) -> None:
    data = wire.encode(header, [])
    while data:
        data = data[os.write(OUT, data) :]


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        _send({"exited": pid, "code": code})


def _prepare(flavors: list[str]) -> None:
    """Import what runners of these flavors need, here, once."""
    imported = False
    for name in flavors:
        module = flavor_module(name)
        if module not in sys.modules:
            with contextlib.suppress(ImportError):  # the runner reports it when loading
                importlib.import_module(module)
                imported = True
    if imported:
        gc.collect()
        gc.freeze()  # keep the collector from touching (and so copying) shared pages


def _fork(request: dict[str, Any]) -> int:
    _prepare(list(request.get("flavors", [])))
    path = Path(request["socket"])
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    config = runner.RunnerConfig.from_dict(request["config"])
    pid = os.fork()
    if pid == 0:  # the runner
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(2, 1)  # model code that prints must not reach the template's channel
            if request.get("nice"):
                os.nice(int(request["nice"]))
            runner.run(listener, config)
        except BaseException as exc:  # report anything, then leave
            os.write(2, f"runner {config.runner_id}: {type(exc).__name__}: {exc}\n".encode())
            os._exit(1)
        os._exit(0)
    listener.close()
    return pid


def _handle(request: dict[str, Any]) -> None:
    try:
        if request.get("op") == "prepare":
            _prepare(list(request.get("flavors", [])))
            _send({"id": request["id"], "ok": True})
            return
        pid = _fork(request)
        _send({"id": request["id"], "ok": True, "pid": pid})
    except Exception as exc:  # a bad request never ends the template
        _send({"id": request.get("id"), "ok": False, "error": f"{type(exc).__name__}: {exc}"})


def main() -> None:
    sys.stdout = sys.stderr  # only frames go to the supervisor's channel (fd 1)
    gc.collect()
    gc.freeze()
    _send({"ready": True, "pid": os.getpid()})
    buffer = bytearray()
    while True:
        readable, _, _ = select.select([IN], [], [], REAP_INTERVAL_S)
        _reap()
        if not readable:
            continue
        chunk = os.read(IN, 1 << 16)
        if not chunk:
            return  # the supervisor is gone
        buffer += chunk
        for body in wire.split_frames(buffer):
            header, _ = wire.decode(body)
            _handle(header)


if __name__ == "__main__":
    main()
