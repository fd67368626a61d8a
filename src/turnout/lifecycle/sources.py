"""Which server-side data a request may make the server read: files under configured roots,
databases and S3 prefixes on a configured list.

Paths, SQL URLs and S3 locations arrive from API callers (retrain data, holdout files);
without a limit a deployer could make the server read any file it can read, or connect to
any host. A refusal says the same whether or not the place exists, and never echoes a URL
(it may carry a password).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from turnout.errors import BadRequest
from turnout.settings import Settings

_MAGIC = re.compile(r"[*?\[]")


@dataclass(frozen=True, slots=True, kw_only=True)
class DataAccess:
    """The places API callers may name; `None` roots or urls mean no limit (trusted,
    in-process use such as tests and library calls)."""

    roots: tuple[Path, ...] | None = ()
    urls: tuple[str, ...] | None = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> DataAccess:
        roots = settings.data_roots
        if roots is None:
            folders = [str(settings.home / "data")]
        else:
            folders = [r for r in roots.split(os.pathsep) if r.strip()]
        urls = (settings.data_urls or "").replace(",", " ").split()
        return cls(roots=tuple(Path(f).expanduser().resolve() for f in folders), urls=tuple(urls))

    @classmethod
    def unlimited(cls) -> DataAccess:
        return cls(roots=None, urls=None)

    # -- files ----------------------------------------------------------------------------

    def check_path(self, location: str, *, what: str) -> None:
        """Refuse a file, folder or glob outside the roots (or an s3:// location outside
        the configured prefixes)."""
        if location.startswith("s3://"):
            self.check_url(location, what=what)
            return
        if self.roots is None:
            return
        path = Path(location).expanduser()
        literal = Path(*_until_magic(path.parts))
        if ".." in path.parts or not self.within(literal):
            raise self._outside(what)

    def within(self, path: Path) -> bool:
        """Whether `path` (symlinks followed) lies under a root."""
        if self.roots is None:
            return True
        resolved = path.resolve()
        return any(resolved.is_relative_to(root) for root in self.roots)

    def check_files(self, files: list[Path], *, what: str) -> None:
        """Refuse when any file found in an allowed folder leads outside it (a symlink)."""
        if any(not self.within(f) for f in files):
            raise self._outside(what)

    def _outside(self, what: str) -> BadRequest:
        return BadRequest(
            f"{what} is not under a folder this server reads data from; the operator lists "
            "those folders in TURNOUT_DATA_ROOTS"
        )

    # -- databases and S3 -----------------------------------------------------------------

    def check_url(self, url: str, *, what: str) -> None:
        """Refuse a database URL or s3:// location not on the configured list."""
        if self.urls is None:
            return
        if url.startswith("s3://"):
            allowed = any(_under_prefix(url, u) for u in self.urls if u.startswith("s3://"))
        else:
            given = _database(url)
            allowed = given is not None and any(
                _same_database(given, wanted)
                for wanted in map(_database, self.urls)
                if wanted is not None
            )
        if not allowed:
            raise BadRequest(
                f"{what} is not one this server reads data from; the operator lists the "
                "databases and S3 prefixes in TURNOUT_DATA_URLS"
            )


def _until_magic(parts: tuple[str, ...]) -> list[str]:
    literal: list[str] = []
    for part in parts:
        if _MAGIC.search(part):
            break
        literal.append(part)
    return literal


def _under_prefix(location: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return location == prefix or location.startswith(prefix + "/")


def _database(url: str) -> URL | None:
    if url.startswith("s3://"):
        return None
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        return None


def _same_database(given: URL, wanted: URL) -> bool:
    """The same server and database (and user, when the allowed URL names one); the driver
    and the query string may differ."""
    return (
        given.get_backend_name() == wanted.get_backend_name()
        and given.host == wanted.host
        and given.port == wanted.port
        and given.database == wanted.database
        and (wanted.username is None or given.username == wanted.username)
    )
