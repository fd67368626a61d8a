"""Jobs on a Ray cluster (`TURNOUT_EXECUTOR=ray://HOST:PORT`, the cluster's job submission
address, usually its dashboard on port 8265; or `ray` for `RAY_ADDRESS` or a local cluster).

Each job is one Ray job whose entrypoint is the same job process the local executor starts
(`python -m turnout.lifecycle.retrain.job ID`), with the job's CPUs and memory reserved for
it and the settings that make it see this system's database, artifact store and data roots.
The Ray job's id is derived from turnout's job id, so whichever controller leads next finds
and watches the job the previous leader started; the job's own heartbeat, cancel handling
and final write are as on the local executor, so a failed, hung, cancelled or killed job
changes nothing in production. Logs are fetched from Ray into the local log file.

The cluster's nodes need turnout installed (the same version) and reach to the database
and artifact store: `TURNOUT_RAY_PYTHON` names their interpreter (default: this one's path,
right when nodes run the same image).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from turnout.errors import BadRequest
from turnout.lifecycle.retrain.executor import JOB_MODULE, Launched
from turnout.store.modes import open_private
from turnout.store.records import JobRecord

RUNNING = {"PENDING", "RUNNING"}
ENDED_CODES = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": -int(signal.SIGTERM)}
SHARED_SETTINGS = (
    "TURNOUT_HOME", "TURNOUT_DATABASE_URL", "TURNOUT_ARTIFACT_ROOT", "TURNOUT_ALLOW_PICKLE",
    "TURNOUT_SQLITE_BUSY_TIMEOUT_MS", "TURNOUT_DATA_ROOTS", "TURNOUT_DATA_URLS",
    "TURNOUT_S3_ENDPOINT_URL", "TURNOUT_LOG_DIR", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN",
)  # fmt: skip
"""What a job on another node needs of this server's environment (nothing else leaves)."""


def submission_id(job_id: int) -> str:
    return f"turnout-job-{job_id}"


def dashboard_address(executor: str) -> str | None:
    """`ray://HOST:PORT` as the job submission client wants it; `ray`: Ray decides."""
    if executor == "ray":
        return None
    if executor.startswith("ray://") and len(executor) > len("ray://"):
        return "http://" + executor.removeprefix("ray://")
    raise BadRequest(f"TURNOUT_EXECUTOR={executor!r}: use local, ray, or ray://HOST:PORT")


class RayExecutor:
    def __init__(self, address: str | None, jobs_dir: Path, env: dict[str, str]) -> None:
        try:
            from ray.job_submission import JobSubmissionClient
        except ImportError:
            raise BadRequest(
                "TURNOUT_EXECUTOR=ray needs Ray's job submission client: pip install 'turnout[ray]'"
            ) from None
        self.client: Any = JobSubmissionClient(address)
        self.jobs_dir = jobs_dir
        self.env = {name: env[name] for name in SHARED_SETTINGS if env.get(name)}
        self.python = os.environ.get("TURNOUT_RAY_PYTHON") or sys.executable

    def log_path(self, job_id: int) -> Path:
        """The job's log as Ray last gave it (fetched again on every call)."""
        path = self.jobs_dir / f"{job_id}.log"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):  # Ray unreachable: the last copy stays
            logs = str(self.client.get_job_logs(submission_id(job_id)))
            with os.fdopen(open_private(path), "w") as out:
                out.truncate(0)
                out.write(logs)
        return path

    def start(self, job: JobRecord) -> Launched:
        cpus = float(job.spec.get("cpus") or 1)
        memory_mb = job.spec.get("memory_mb")
        try:
            self.client.submit_job(
                entrypoint=f"{self.python} -u -m {JOB_MODULE} {job.id}",
                submission_id=submission_id(job.id),
                runtime_env={"env_vars": {**self.env, "PYTHONUNBUFFERED": "1"}},
                entrypoint_num_cpus=cpus,
                entrypoint_memory=int(memory_mb) << 20 if memory_mb else None,
                metadata={"turnout_job": str(job.id), "deployment": job.deployment},
            )
        except Exception as exc:  # the executor's contract: a start that fails is an OSError
            raise OSError(f"Ray refused the job: {exc}") from exc
        return Launched(host=None, pid=None)

    def _status(self, job: JobRecord) -> str | None:
        try:
            return str(self.client.get_job_status(submission_id(job.id)).value)
        except Exception:  # unreachable, or the job is unknown to this cluster
            return None

    def alive(self, job: JobRecord) -> bool | None:
        status = self._status(job)
        return None if status is None else status in RUNNING

    def exit_code(self, job: JobRecord) -> int | None:
        status = self._status(job)
        return ENDED_CODES.get(status) if status is not None else None

    def stop(self, job: JobRecord) -> None:
        with contextlib.suppress(Exception):  # already ended, or out of reach
            self.client.stop_job(submission_id(job.id))
