"""`turnout retrain`, `turnout retrain-policy ...` and `turnout jobs ...`: retrain a
deployment's champion on fresh data, by hand or by policy, and follow the jobs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from turnout.cli.batch import summary as batch_summary
from turnout.cli.output import JsonOption, console, errors, pairs, print_json, table
from turnout.client import Client
from turnout.management import data_files

policy_app = typer.Typer(
    help="Set, show or clear when and how a deployment's champion is retrained.",
    no_args_is_help=True,
)
jobs_app = typer.Typer(
    help="Follow retrain and batch jobs: list, show, logs, output, cancel.", no_args_is_help=True
)

FINISHED = ("succeeded", "failed", "cancelled")
HANDOFF_WAIT_S = 15.0
"""How long `retrain --wait` waits, after success, to report the hand-off (a rollout)."""


def retrain(
    name: str = typer.Argument(..., help="Deployment name."),
    data: str = typer.Option(
        None,
        help="Train on this instead of the policy's data: a CSV/Parquet file, folder or glob, "
        "or log:30d for the deployment's own traffic with actuals over 30 days.",
    ),
    reason: str = typer.Option("", help="Why, for the history."),
    wait: bool = typer.Option(False, "--wait", help="Follow the job until it finishes."),
    json: bool = JsonOption,
) -> None:
    """Retrain the deployment's champion now: same pipeline and params, newer data. The new
    version is rolled out with the deployment's plan (or only registered, per policy).
    With --wait, the exit code is 0 only when the job succeeded."""
    with Client() as client:
        source = _source(client, data) if data is not None else None
        job = client.retrain(name, data=source, reason=reason)
        if wait:
            job = _follow(client, int(job["id"]), quiet=json)
    if json:
        print_json(job)
        if wait and job["state"] != "succeeded":
            raise typer.Exit(1)  # a script waiting on the job learns how it ended
        return
    if not wait:
        console.print(
            f"retrain job {job['id']} queued for {name} (retraining {job['model']}:"
            f"{job['parent_version']}); follow it with: turnout jobs show {job['id']}",
            highlight=False,
        )
        return
    _summary(job)
    if job["state"] != "succeeded":
        raise typer.Exit(1)


def _follow(client: Client, job_id: int, *, quiet: bool) -> Any:
    with Progress(
        TextColumn("job {task.fields[job]}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=errors,
        disable=quiet,
        transient=True,
    ) as progress:
        task = progress.add_task("queued", total=1.0, job=job_id)
        while True:
            job = client.job(job_id)
            progress.update(task, completed=float(job["progress"]), description=job["message"])
            if job["state"] in ("failed", "cancelled"):
                return job
            if job["state"] == "succeeded":
                break
            time.sleep(1.0)
        # the controller hands the new version on at its next look: show what it did
        deadline = time.monotonic() + HANDOFF_WAIT_S
        while "handoff" not in (job.get("result") or {}) and time.monotonic() < deadline:
            time.sleep(0.5)
            job = client.job(job_id)
        return job


def _summary(job: dict[str, Any]) -> None:
    result = job.get("result") or {}
    handoff = result.get("handoff") or {}
    rows = [
        ("state", job["state"]),
        ("message", job["message"]),
        ("trigger", job["trigger"]),
        ("retrained", f"{job['model']}:{job['parent_version']}"),
        ("new version", f"{job['model']}:{result['version']}" if "version" in result else None),
        ("data fingerprint", result.get("data_fingerprint")),
        ("rows", _rows(result.get("rows"))),
        ("metrics", _metrics(result.get("metrics"))),
        ("parent's metrics", _metrics(result.get("parent_metrics"))),
        ("hand-off", _handoff(handoff)),
        ("created", f"{job['created_at']} by {job['created_by']}"),
        ("finished", job.get("finished_at")),
    ]
    pairs(f"job {job['id']} of {job['deployment']}", rows)


def _rows(rows: Any) -> str | None:
    if not isinstance(rows, dict):
        return None
    return ", ".join(f"{k} {v}" for k, v in rows.items())


def _metrics(metrics: Any) -> str | None:
    if not isinstance(metrics, dict) or not metrics:
        return None
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
    )


def _handoff(handoff: dict[str, Any]) -> str | None:
    if not handoff:
        return None
    if handoff.get("action") == "rollout":
        return f"rollout {handoff.get('rollout')} started"
    if handoff.get("action") == "registered":
        return "registered only (policy on_success: register)"
    return f"no rollout: {handoff.get('error')}"


# -- policies -------------------------------------------------------------------------------


@policy_app.command("set")
def set_policy(
    name: str = typer.Argument(..., help="Deployment name."),
    file: Path = typer.Option(..., "--file", "-f", help="YAML policy file."),
    json: bool = JsonOption,
) -> None:
    """Set the deployment's retrain policy from a YAML file."""
    if not file.is_file():
        raise typer.BadParameter(f"{file} is not a file")
    with Client() as client:
        data = client.set_retrain_policy(name, file.read_text())
    if json:
        print_json(data)
        return
    console.print(f"retrain policy of {name} set", highlight=False)
    _show_policy(data)


@policy_app.command("show")
def show_policy(
    name: str = typer.Argument(..., help="Deployment name."), json: bool = JsonOption
) -> None:
    """The policy, and what the last trigger check saw."""
    with Client() as client:
        data = client.retrain_policy(name)
    if json:
        print_json(data)
        return
    _show_policy(data)


@policy_app.command("clear")
def clear_policy(name: str = typer.Argument(..., help="Deployment name.")) -> None:
    """Remove the policy: no more automatic retrains (manual ones need --data)."""
    with Client() as client:
        client.clear_retrain_policy(name)
    console.print(f"retrain policy of {name} cleared", highlight=False)


def _show_policy(data: dict[str, Any]) -> None:
    policy = data.get("policy")
    if policy is None:
        console.print(f"{data['deployment']} has no retrain policy", highlight=False)
        return
    state = data.get("state") or {}
    triggers = policy.get("triggers") or {}
    pairs(
        f"retrain policy of {data['deployment']}",
        [
            ("data", orjson.dumps(policy.get("data")).decode()),
            ("target", policy.get("target")),
            ("triggers", orjson.dumps(triggers).decode()),
            ("cooldown", f"{policy.get('cooldown'):g} s"),
            ("timeout", f"{policy.get('timeout'):g} s"),
            ("on success", policy.get("on_success")),
            ("last check", state.get("checked_at")),
            ("last verdict", state.get("reason")),
            ("running job", data.get("running_job")),
        ],
    )


# -- jobs -----------------------------------------------------------------------------------


@jobs_app.command("list")
def list_jobs(
    deployment: str = typer.Option(None, help="Only this deployment's jobs."),
    state: str = typer.Option(None, help="queued, running, succeeded, failed or cancelled."),
    limit: int = typer.Option(50, help="At most this many, newest first."),
    json: bool = JsonOption,
) -> None:
    """Retrain and batch jobs, newest first."""
    with Client() as client:
        jobs = client.jobs(deployment=deployment, state=state, limit=limit)
    if json:
        print_json(jobs)
        return
    rows = [
        (j["id"], j.get("kind", "retrain"), j["deployment"], f"{j['model']}:{j['parent_version']}",
         j["trigger"], j["state"], f"{100 * j['progress']:.0f}%",
         (j.get("result") or {}).get("version"), j["message"], j["created_at"][:19])
        for j in jobs
    ]  # fmt: skip
    columns = ["id", "kind", "deployment", "version", "trigger", "state", "progress"]
    table("jobs", [*columns, "new version", "message", "created"], rows)


@jobs_app.command("show")
def show_job(job_id: int = typer.Argument(..., help="Job id."), json: bool = JsonOption) -> None:
    """One job: state, progress, trigger, the new version, data fingerprint, metrics (a
    batch job: rows scored and where its output is)."""
    with Client() as client:
        job = client.job(job_id)
    if json:
        print_json(job)
        return
    if job.get("kind") == "batch":
        batch_summary(job, None)
        return
    _summary(job)


@jobs_app.command("logs")
def job_logs(
    job_id: int = typer.Argument(..., help="Job id."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until it ends."),
) -> None:
    """What the job's process printed."""
    with Client() as client:
        shown = client.job_logs(job_id)
        typer.echo(shown, nl=False)
        while follow and client.job(job_id)["state"] not in FINISHED:
            time.sleep(1.0)
            text = client.job_logs(job_id)
            if text.startswith(shown):
                typer.echo(text[len(shown) :], nl=False)
            else:
                typer.echo(text, nl=False)
            shown = text
        if follow:
            text = client.job_logs(job_id)
            if text.startswith(shown):
                typer.echo(text[len(shown) :], nl=False)


@jobs_app.command("output")
def job_output(
    job_id: int = typer.Argument(..., help="Batch job id."),
    path: Path = typer.Argument(..., help="Where to save the scored rows (a Parquet file)."),
) -> None:
    """Download a succeeded batch job's output as one Parquet file."""
    with Client() as client:
        saved = client.download_batch_output(job_id, path)
    console.print(f"batch job {job_id}: output saved to {saved}", highlight=False)


@jobs_app.command("cancel")
def cancel_job(job_id: int = typer.Argument(..., help="Job id."), json: bool = JsonOption) -> None:
    """Stop a job; nothing it was doing reaches production."""
    with Client() as client:
        job = client.cancel_job(job_id)
    if json:
        print_json(job)
        return
    state = "cancelled" if job["state"] == "cancelled" else "stopping (within one look)"
    console.print(f"job {job_id}: {state}", highlight=False)


def _source(client: Client, data: str) -> dict[str, Any]:
    """What `--data` names, as the server should read it: your own files are uploaded (the
    server may run elsewhere, or not read your folders); `log:`, `s3://` and database URLs,
    and paths that are not on this machine, go as they are."""
    if data.startswith("log:"):
        return {"log": data[4:]}
    if "://" in data or not data_files(data):
        return {"path": data}
    uploaded = client.upload_data(data)
    errors.print(
        f"uploaded {len(uploaded['files'])} file(s), {uploaded['bytes'] / 2**20:.1f} MB, "
        f"to {uploaded['path']}"
    )
    return {"path": uploaded["path"]}
