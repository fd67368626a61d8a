"""Runners as an unprivileged user: staged files readable, the server's home not."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from turnout.host.runner import drop_privileges
from turnout.host.staging import Staging
from turnout.store.artifacts import LocalArtifactStore

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")


def test_a_runner_that_dropped_to_nobody_reads_its_staged_files_and_not_the_home(
    tmp_path: Path,
) -> None:
    nobody = pwd.getpwnam("nobody")
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    secret = home / "admin.token"
    secret.write_text("tnt_secret")
    store = LocalArtifactStore(home / "artifacts")
    source = tmp_path / "model.bin"
    source.write_bytes(b"weights")
    sha, _ = store.put(source)
    run_dir = Path(tempfile.mkdtemp(prefix="turnout-test-"))  # as the host makes it
    run_dir.chmod(0o711)
    staging = Staging(run_dir / "stage", store, uid=nobody.pw_uid, gid=nobody.pw_gid)
    record = {"artifact": {"kind": "file", "files": [{"path": "model.bin", "sha256": sha}]}}
    staged = staging.version(record)

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the would-be runner
        os.close(read)
        try:
            drop_privileges(nobody.pw_uid, nobody.pw_gid)
            verdicts = [staged.read_bytes() == b"weights"]
            try:
                secret.read_text()
                verdicts.append(False)
            except PermissionError:
                verdicts.append(True)
            os.write(write, bytes(verdicts))
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 8)
    os.waitpid(pid, 0)
    assert answer == bytes([True, True])  # staged file read, home refused
    staging.remove(staged)
    assert not staged.exists()
    shutil.rmtree(run_dir)
