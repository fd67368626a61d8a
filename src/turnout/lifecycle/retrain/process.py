"""What every job process shares, whatever its kind (retrain, batch scoring): claiming the
job's row, recording stages, the heartbeat, honouring a cancel or SIGTERM, and recording
how it ended. A kind of job is a subclass that says what `run` does."""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType

from turnout.errors import Conflict, TurnoutError
from turnout.lifecycle.retrain import ledger
from turnout.store.db import Database
from turnout.store.jobs import get_job
from turnout.store.records import JobRecord, JobState
from turnout.types import JSON

HEARTBEAT_S = 5.0
STOPPED_EXIT_CODE = 128 + signal.SIGTERM
MAX_MESSAGE_CHARS = 500


class JobFailed(TurnoutError):
    """Why the job failed, in the one line its message shows."""


class JobStopped(BaseException):
    """SIGTERM, or the job is no longer running in the DB: leave at once and write nothing
    (whoever stopped it records why). Not an Exception, so a pipeline cannot swallow it."""


@contextmanager
def blame(what: str) -> Iterator[None]:
    """Turn anything but a turnout error into JobFailed("{what} TypeName: text")."""
    try:
        yield
    except TurnoutError:
        raise
    except Exception as exc:
        raise JobFailed(f"{what} {type(exc).__name__}: {exc}") from exc


def one_line(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, TurnoutError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:MAX_MESSAGE_CHARS]


def say(text: str) -> None:
    """One line of the job's log."""
    print(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {text}", flush=True)


class JobProcess:
    """One claimed (running) job in this process: its stages, heartbeat and outcome.
    Subclasses implement `run`, which ends by calling `succeed` and returns what the log's
    last line says."""

    def __init__(self, job: JobRecord, *, db: Database) -> None:
        self.job = job
        self.db = db
        self.finishing = False
        """While set, SIGTERM waits: the last step and the final write run to the end."""
        self._beating = threading.Event()
        self._turn = threading.Lock()
        """Held while the heartbeat acts on a cancel, and while the last step begins."""

    def run(self) -> str:
        raise NotImplementedError

    def execute(self) -> int:
        """Run the job and record its outcome; the process's exit code."""
        signal.signal(signal.SIGTERM, self._on_sigterm)
        heartbeat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        heartbeat.start()
        try:
            done = self.run()
        except JobStopped as stop:
            say(f"stopped: {stop}")
            return STOPPED_EXIT_CODE
        except Exception as exc:
            failure: Exception | None = exc
        else:
            failure = None
        finally:  # before the last write, so that no beat sees the job end and signals us
            self._beating.set()
            heartbeat.join(timeout=HEARTBEAT_S)
        if failure is None:
            say(f"succeeded: {done}")
            return 0
        if failure.__cause__ is not None or not isinstance(failure, TurnoutError):
            traceback.print_exception(failure, file=sys.stdout)
        message = one_line(failure)
        say(f"failed: {message}")
        self.fail(message)
        return 1

    # -- the job's row -----------------------------------------------------------------------

    def stage(self, progress: float, message: str, *, quiet: bool = False) -> None:
        """Record the stage, or end here if the job was ended or a cancel was asked for."""
        if not quiet:
            say(message)
        try:
            with self.db.write() as conn:
                self.job = ledger.stage(conn, self.job, progress=progress, message=message)
        except Conflict:
            raise JobStopped(f"job {self.job.id} is no longer running") from None
        if not self.job.active:
            raise JobStopped(self.job.message)

    def last_step(self, progress: float, message: str) -> None:
        """Record the final stage; from here on a cancel or SIGTERM is too late: the job
        runs to its end."""
        with self._turn:
            self.stage(progress, message)
            self.finishing = True

    def succeed(self, message: str, result: dict[str, JSON]) -> None:
        try:
            with self.db.write() as conn:
                ledger.succeed(conn, self.job, message=message, result=result)
        except Conflict:
            say(f"{message}, but the job was ended meanwhile")

    def fail(self, message: str) -> None:
        try:
            with self.db.write() as conn:
                ledger.end(conn, self.job, JobState.FAILED, message)
        except Conflict:
            pass  # the supervisor ended it first (cancelled, timed out): its reason stands
        except TurnoutError as exc:
            say(f"could not record the failure: {exc.message}")

    def _heartbeat(self) -> None:
        """Stamp `heartbeat_at`; stop this process when the job was ended elsewhere, and
        honour a cancel request itself (a supervisor on another host cannot signal us)."""
        while not self._beating.wait(HEARTBEAT_S):
            try:
                with self._turn, self.db.write() as conn:
                    job = get_job(conn, self.job.id)
                    over = job.state != JobState.RUNNING
                    if not over and job.cancel_requested and not self.finishing:
                        ledger.end(conn, job, JobState.CANCELLED, ledger.CANCELLED_BY_REQUEST)
                        over = True
                    elif not over:
                        ledger.beat(conn, job)
            except TurnoutError as exc:  # a DB hiccup: the next beat tries again
                say(f"heartbeat: {exc.message}")
                continue
            if over:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if not self.finishing:
            raise JobStopped("SIGTERM")


def claim(db: Database, job_id: int) -> JobRecord | None:
    """Mark the job running by this process, if it is still queued."""
    try:
        with db.write() as conn:
            job = get_job(conn, job_id)
            if job.state != JobState.QUEUED:
                return None
            return ledger.claim(conn, job)
    except Conflict:
        return None
