"""A runner process: loads one version and answers predictions over stdin/stdout.

The gateway starts one per version when models run isolated, so a model that crashes,
hangs or leaks memory takes down only this process, which the gateway then replaces.
Usage (by the gateway): python -m turnout.gateway.runner_process MODEL VERSION
"""

from __future__ import annotations

import gc
import os
import resource
import sys
from typing import BinaryIO

from turnout.gateway import wire
from turnout.registry.service import Registry
from turnout.settings import Settings
from turnout.store.artifacts import open_artifact_store
from turnout.store.db import Database


def _limit_memory(growth_mb: int) -> None:
    """Cap the address space at what the loaded model uses plus `growth_mb`."""
    if growth_mb <= 0:
        return
    with open("/proc/self/statm") as statm:
        used = int(statm.read().split()[0]) * resource.getpagesize()
    limit = used + growth_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _read(stream: BinaryIO) -> bytes | None:
    head = stream.read(wire.LENGTH.size)
    if len(head) < wire.LENGTH.size:
        return None
    (size,) = wire.LENGTH.unpack(head)
    return stream.read(size)


def main() -> None:
    model, version = sys.argv[1], int(sys.argv[2])
    settings = Settings()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # model code that prints must not corrupt the frames
    db = Database.from_url(settings.db_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    registry = Registry(
        db,
        open_artifact_store(settings.artifacts),
        work_dir=settings.cache_dir / "load" / str(os.getpid()),
        allow_pickle=settings.allow_pickle,
    )
    try:
        servable = registry.load(registry.get_version(model, version))
        servable.warm()
    except Exception as exc:  # reported to the gateway, which will not route here
        stdout.write(wire.encode({"ready": False, "error": f"{type(exc).__name__}: {exc}"}, []))
        stdout.flush()
        return
    finally:
        db.dispose()
    gc.collect()
    gc.freeze()
    _limit_memory(settings.runner_memory_mb)
    stdout.write(wire.encode({"ready": True}, []))
    stdout.flush()
    while (body := _read(stdin)) is not None:
        header, (rows,) = wire.decode(body)
        try:
            assert rows is not None
            prediction = servable.predict(rows)
            reply = wire.encode(
                {"id": header["id"], "ok": True}, [prediction.values, prediction.probabilities]
            )
        except MemoryError:
            dying = {"id": header["id"], "ok": False, "error": "out of memory", "exiting": True}
            stdout.write(wire.encode(dying, []))
            stdout.flush()
            os._exit(70)  # start over clean rather than limp on
        except Exception as exc:  # the model's own failure, reported per call
            reply = wire.encode(
                {"id": header["id"], "ok": False, "error": f"{type(exc).__name__}: {exc}"}, []
            )
        stdout.write(reply)
        stdout.flush()


if __name__ == "__main__":
    main()
