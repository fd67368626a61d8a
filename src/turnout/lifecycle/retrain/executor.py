"""Where jobs (retrain and batch scoring) run, and the supervision pass that starts, watches
and stops them.

A job of any kind runs in its own process (`python -m turnout.lifecycle.retrain.job ID`,
which picks the job's kind), never in a serving or controller process. `Executor` is the seam
for running jobs elsewhere (a Ray or Kubernetes executor implements the same methods);
`LocalExecutor` runs them on this machine.
`supervise` is one pass of the controller over the active jobs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection

from turnout.errors import Conflict, NotFound
from turnout.lifecycle.retrain import ledger
from turnout.lifecycle.retrain.spec import JobSpec
from turnout.settings import Settings
from turnout.store import metadata as md
from turnout.store.db import Database
from turnout.store.jobs import get_job, list_jobs
from turnout.store.modes import open_private
from turnout.store.records import ACTIVE_JOB_STATES, JobRecord, JobState

JOB_MODULE = "turnout.lifecycle.retrain.job"
START_TIMEOUT_S = 60.0
"""A launched job whose process has not marked it running by then has failed."""
LOST_AFTER_S = 60.0
"""A running job out of the executor's sight and silent this long is lost."""
STOP_GRACE_S = 5.0
"""Between SIGTERM and SIGKILL when a job is stopped."""
CLOCK_SLACK_S = 5.0
"""Allowed disagreement between /proc's process start time and the job's `started_at`."""
LOG_TAIL_LINES = 3
LOG_TAIL_BYTES = 8192
MAX_ACTIVE_JOBS = 10_000


@dataclass(frozen=True, slots=True)
class Launched:
    """Where a job's process runs, as far as the executor knows when it starts it."""

    host: str | None
    pid: int | None


class Executor(Protocol):
    """Runs job processes. Every method returns promptly (`stop` within its grace)."""

    def start(self, job: JobRecord) -> Launched:
        """Launch `python -m turnout.lifecycle.retrain.job <id>` for the job."""
        ...

    def alive(self, job: JobRecord) -> bool | None:
        """Whether the job's process still runs; None when this executor cannot tell
        (e.g. the job runs on another host)."""
        ...

    def exit_code(self, job: JobRecord) -> int | None:
        """How the job's process ended when known: its exit code, or minus the signal that
        killed it."""
        ...

    def stop(self, job: JobRecord) -> None:
        """End the job's process and whatever it started; nothing when out of reach."""
        ...

    def log_path(self, job_id: int) -> Path:
        """Where the job's stdout and stderr (its log) are kept."""
        ...


def child_env(settings: Settings) -> dict[str, str]:
    """This process's environment plus the TURNOUT_* variables that make a job process see
    the same home, metadata DB, artifact store, pickle policy and data roots as `settings`
    (which may have come from arguments rather than the environment)."""
    limits = {"TURNOUT_DATA_ROOTS": settings.data_roots, "TURNOUT_DATA_URLS": settings.data_urls}
    return {
        **os.environ,
        "TURNOUT_HOME": str(settings.home),
        "TURNOUT_DATABASE_URL": settings.db_url,
        "TURNOUT_ARTIFACT_ROOT": settings.artifacts,
        "TURNOUT_ALLOW_PICKLE": "true" if settings.allow_pickle else "false",
        "TURNOUT_SQLITE_BUSY_TIMEOUT_MS": str(settings.sqlite_busy_timeout_ms),
        **{name: value for name, value in limits.items() if value is not None},
    }


class LocalExecutor:
    """Jobs as child processes of this one, each the leader of its own session (so stopping
    a job also ends what its pipeline started), logging to `jobs_dir/<id>.log`.

    Jobs started by an earlier server process on this host are still watched and stopped,
    through the pid and host on their row."""

    def __init__(
        self, jobs_dir: Path, env: dict[str, str], *, grace_s: float = STOP_GRACE_S
    ) -> None:
        self.jobs_dir = jobs_dir
        self.env = env
        self.grace_s = grace_s
        self.host = socket.gethostname()
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def log_path(self, job_id: int) -> Path:
        return self.jobs_dir / f"{job_id}.log"

    def start(self, job: JobRecord) -> Launched:
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        with os.fdopen(open_private(self.log_path(job.id)), "ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", JOB_MODULE, str(job.id)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.env, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        self._children[job.id] = child
        # reaped the moment it exits: never a zombie, and its exit code is kept
        threading.Thread(target=child.wait, name=f"job-{job.id}-reaper", daemon=True).start()
        return Launched(self.host, child.pid)

    def alive(self, job: JobRecord) -> bool | None:
        child = self._children.get(job.id)
        if child is not None:
            return child.poll() is None
        if job.host != self.host or job.pid is None:
            return None
        return job_process(job.pid, job)

    def exit_code(self, job: JobRecord) -> int | None:
        child = self._children.get(job.id)
        if child is None:
            return None
        code = child.poll()
        if code is None and not _exists(child.pid):
            # the reaper thread is inside wait() and holds its lock, so poll() cannot tell
            # yet: wait for it to record the code (a moment)
            with suppress(subprocess.TimeoutExpired):
                code = child.wait(timeout=1.0)
        return code

    def stop(self, job: JobRecord) -> None:
        child = self._children.get(job.id)
        if child is not None:
            _end_group(child.pid, lambda: child.poll() is not None, self.grace_s)
        elif job.host == self.host and job.pid is not None and job_process(job.pid, job):
            pid = job.pid
            _end_group(pid, lambda: not job_process(pid, job), self.grace_s)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the pid was reused by another user's process
        return False
    return True


def _end_group(pid: int, gone: Callable[[], bool], grace_s: float) -> None:
    """SIGTERM to the process group led by `pid`, SIGKILL if it outlives the grace, and
    SIGKILL to anything of the group left once the leader is gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if gone():
            break
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + grace_s
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.05)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def job_process(pid: int, job: JobRecord) -> bool:
    """Whether `pid` is still this job's process: it exists and is no zombie, and where
    /proc tells, it runs this job's command and started before the job's row says it did
    (a reused pid belongs to a process started later)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or reused by another user
        return False
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return True
    try:
        command = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
        fields = (proc / str(pid) / "stat").read_text().rpartition(")")[2].split()
        boot_s = next(
            float(line.split()[1])
            for line in (proc / "stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, IndexError, ValueError):
        return False
    if fields[0] in ("Z", "X") or JOB_MODULE.encode() not in command:
        return False
    if str(job.id).encode() not in command:
        return False
    started_s = boot_s + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    if job.started_at is None:
        return True
    # a queued row's started_at is the launch, stamped just before the process started
    latest = job.started_at.timestamp() + CLOCK_SLACK_S
    if job.state == JobState.QUEUED:
        latest += START_TIMEOUT_S
    return started_s <= latest


# -- supervision ---------------------------------------------------------------------------


def supervise(
    db: Database,
    executor: Executor,
    *,
    now: datetime | None = None,
    watching: set[int] | None = None,
) -> list[JobRecord]:
    """One pass over the active jobs: start the queued ones, stop the cancelled and the
    overdue, fail those whose process is gone or silent. Returns the jobs that reached a
    finished state during the pass.

    A job that its own process finishes (succeeded, or failed with its reason) is returned
    by the pass that sees it finished when the caller keeps `watching`: the ids of the jobs
    active after the previous pass, updated here."""
    moment = now or md.now()
    with db.read() as conn:
        active = list_jobs(conn, states=ACTIVE_JOB_STATES, limit=MAX_ACTIVE_JOBS)
    finished: dict[int, JobRecord] = {}
    for job in sorted(active, key=lambda j: j.id):
        after = _reconcile(db, executor, job, moment)
        if after is not None and not after.active:
            finished[after.id] = after
    if watching is not None:
        for job_id in sorted(watching - {job.id for job in active}):
            with suppress(NotFound), db.read() as conn:
                job = get_job(conn, job_id)
                if not job.active:
                    finished.setdefault(job.id, job)
        watching.clear()
        watching.update(job.id for job in active if job.id not in finished)
    return list(finished.values())


def _reconcile(
    db: Database, executor: Executor, job: JobRecord, moment: datetime
) -> JobRecord | None:
    """The job after this pass acted on it, or None when it left it alone."""
    if job.state == JobState.QUEUED and job.started_at is None:
        return _launch(db, executor, job)
    if job.state == JobState.QUEUED:
        return _check_start(db, executor, job, moment)
    if job.cancel_requested:
        executor.stop(job)
        return _end(db, job, JobState.CANCELLED, ledger.CANCELLED_BY_REQUEST)
    timeout_s = float(job.spec.get("timeout_s") or JobSpec.timeout_s)
    if _age_s(moment, job.started_at) > timeout_s:
        executor.stop(job)
        return _end(db, job, JobState.FAILED, f"timed out after {timeout_s:g} s")
    alive = executor.alive(job)
    if alive is False:
        ending = _ending(executor.exit_code(job))
        message = f"the job process {ending}{_tail(executor, job.id)}"
        return _end(db, job, JobState.FAILED, message)
    last = job.heartbeat_at or job.started_at
    if alive is None and _age_s(moment, last) > LOST_AFTER_S:
        executor.stop(job)
        since = last.isoformat(timespec="seconds") if last is not None else "it started"
        return _end(
            db, job, JobState.FAILED, f"lost: no heartbeat from host {job.host} since {since}"
        )
    return None


def _launch(db: Database, executor: Executor, job: JobRecord) -> JobRecord:
    """Stamp the launch on the row (so no later pass launches it again), then start it."""
    claimed = _apply(db, job, ledger.stamp_launch)
    if claimed.state != JobState.QUEUED:
        return claimed
    try:
        launched = executor.start(claimed)
    except OSError as exc:
        return _end(db, claimed, JobState.FAILED, f"could not start the job process: {exc}")
    return _apply(
        db, claimed, lambda conn, job: ledger.place(conn, job, host=launched.host, pid=launched.pid)
    )


def _check_start(
    db: Database, executor: Executor, job: JobRecord, moment: datetime
) -> JobRecord | None:
    """A launched job whose process has not marked it running yet."""
    if executor.alive(job) is False:
        ending = _ending(executor.exit_code(job))
        return _end(db, job, JobState.FAILED, (
            f"the job process {ending} before it started{_tail(executor, job.id)}"
        ))  # fmt: skip
    if _age_s(moment, job.started_at) > START_TIMEOUT_S:
        executor.stop(job)
        return _end(db, job, JobState.FAILED, (
            f"the job process did not start within {START_TIMEOUT_S:g} s"
            f"{_tail(executor, job.id)}"
        ))  # fmt: skip
    return None


def _apply(
    db: Database, job: JobRecord, write: Callable[[Connection, JobRecord], JobRecord]
) -> JobRecord:
    """Compare-and-set from the state read; when another writer won, the job as it is."""
    try:
        with db.write() as conn:
            return write(conn, job)
    except Conflict:
        with db.read() as conn:
            return get_job(conn, job.id)


def _end(db: Database, job: JobRecord, state: JobState, message: str) -> JobRecord:
    return _apply(db, job, lambda conn, read: ledger.end(conn, read, state, message))


def _age_s(moment: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else (moment - since).total_seconds()


def _ending(code: int | None) -> str:
    if code is None:
        return "died"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _tail(executor: Executor, job_id: int) -> str:
    """`; its log ends: ...` with the last lines the job printed, or nothing."""
    try:
        with executor.log_path(job_id).open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(0, size - LOG_TAIL_BYTES))
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip()[:200] for line in text.splitlines() if line.strip()]
    return f"; its log ends: {' | '.join(lines[-LOG_TAIL_LINES:])}" if lines else ""
