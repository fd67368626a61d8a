"""File modes of the server's state: a 0700 home and 0600 files, whatever umask the
operator's shell had. The database holds SQL credentials, the prediction log holds request
payloads: nobody but the server's user reads them."""

from __future__ import annotations

import os
from pathlib import Path

UMASK = 0o077
"""Every file and folder a server process (and the workers, model host, log writers and
jobs it starts) creates is its user's alone."""
FILE_MODE = 0o600
DIR_MODE = 0o700


def private_home(home: Path) -> None:
    """Make this process create private files from now on, and `home` a 0700 folder (an
    existing one is tightened)."""
    os.umask(UMASK)
    home.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    home.chmod(DIR_MODE)


def private_file(path: Path) -> None:
    """`path` as a 0600 file: created empty when missing, tightened when it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def open_private(path: Path) -> int:
    """A file descriptor appending to the 0600 file `path` (created when missing)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd
