"""Hide the server's state from a runner that has to stay root.

When runners cannot become an unprivileged user (Python itself lives in a private folder,
say /root/.pyenv), a runner forked as root moves into a mount namespace of its own and gets
an empty, unreadable tmpfs mounted over the server's home and stores: model code then
finds no database, no token and no artifact store, whatever its privileges.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REC = 0x4000
MS_PRIVATE = 1 << 18


def hide(paths: Sequence[Path]) -> None:
    """Mount an empty tmpfs over each existing folder of `paths`, in a new mount namespace
    (mounts made private first, so nothing reaches the rest of the machine)."""
    folders = [p for p in paths if p.is_dir()]
    if not folders:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    _check(libc.unshare(CLONE_NEWNS), "unshare a mount namespace")
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    for folder in folders:
        target = str(folder).encode()
        _check(libc.mount(b"tmpfs", target, b"tmpfs", flags, b"size=4k,mode=000"), str(folder))


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"cannot {what}: {os.strerror(errno)}")
