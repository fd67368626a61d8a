"""`turnout batch`: score a file with a deployment's model in a job, follow it with a
progress bar, and download the output."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from turnout.cli.output import JsonOption, console, errors, pairs, print_json
from turnout.client import Client
from turnout.management import data_files

POLL_S = 0.5
ROWS_DONE = re.compile(r"scored ([\d,]+) of ([\d,]+) rows")
"""How a running batch job's message says how far it got (`lifecycle.batch` writes it)."""


def batch(
    name: str = typer.Argument(..., help="Deployment name."),
    input: str = typer.Option(
        None,
        "--input",
        help="Your CSV/Parquet file, folder or glob (uploaded), or a path or URL on the "
        "server. Optional with --resume.",
    ),
    output: Path = typer.Option(
        None, "--output", help="Where to save the scored rows (one Parquet file) with --wait."
    ),
    version: int = typer.Option(
        None, "--version", help="Score with this version, not the champion."
    ),
    chunk_rows: int = typer.Option(None, "--chunk-rows", help="Rows per chunk (default 10,000)."),
    resume: int = typer.Option(
        None, "--resume", help="Continue this earlier batch job from its last finished chunk."
    ),
    wait: bool = typer.Option(False, "--wait", help="Follow the job, then download its output."),
    json: bool = JsonOption,
) -> None:
    """Score a file with the deployment's champion (or --version) in a batch job. Each row
    gets a prediction id (batch-JOB-ROW) that `turnout actuals` can grade later."""
    if input is None and resume is None:
        raise typer.BadParameter("give --input (or --resume an earlier batch job)")
    if wait and output is None:
        raise typer.BadParameter("--wait downloads the output: give --output")
    with Client() as client:
        source = _source(client, input) if input is not None else None
        job = client.batch(name, input=source, version=version, chunk_rows=chunk_rows,
                           resume=resume)  # fmt: skip
        if not wait:
            if json:
                print_json(job)
                return
            console.print(
                f"batch job {job['id']} queued for {name}; follow it with: turnout jobs show "
                f"{job['id']}; once it succeeded, fetch the output with: turnout jobs output "
                f"{job['id']} {output or 'scored.parquet'}",
                highlight=False,
            )
            return
        job = follow(client, int(job["id"]), quiet=json)
        if job["state"] == "succeeded":
            client.download_batch_output(int(job["id"]), output)
    if json:
        print_json(job)
    else:
        summary(job, output if job["state"] == "succeeded" else None)
    if job["state"] != "succeeded":
        raise typer.Exit(1)


def follow(client: Client, job_id: int, *, quiet: bool) -> Any:
    """The job once it ended, with a bar of rows scored and rows/s meanwhile."""
    with Progress(
        TextColumn("batch job {task.fields[job]}"),
        BarColumn(),
        TextColumn("{task.fields[rows]}"),
        TextColumn("{task.fields[speed]}"),
        TimeElapsedColumn(),
        console=errors,
        disable=quiet,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=None, job=job_id, rows="queued", speed="")
        first: tuple[float, int] | None = None
        while True:
            job = client.job(job_id)
            counted = rows_done(job["message"])
            if counted is not None:
                done, total = counted
                now = time.monotonic()
                first = first or (now, done)
                elapsed = now - first[0]
                speed = f"{(done - first[1]) / elapsed:,.0f} rows/s" if elapsed > 0 else ""
                rows = f"{done:,}/{total:,} rows"
                progress.update(task, completed=done, total=total, rows=rows, speed=speed)
            if job["state"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(POLL_S)


def rows_done(message: str) -> tuple[int, int] | None:
    """(rows scored, rows in all) from a batch job's message."""
    found = ROWS_DONE.search(message)
    if found is None:
        return None
    return int(found[1].replace(",", "")), int(found[2].replace(",", ""))


def summary(job: dict[str, Any], saved: Path | None) -> None:
    result = job.get("result") or {}
    pairs(
        f"batch job {job['id']} of {job['deployment']}",
        [
            ("state", job["state"]),
            ("message", job["message"]),
            ("scored with", f"{job['model']}:{job['parent_version']}"),
            ("rows", result.get("rows")),
            ("prediction ids", result.get("prediction_ids")),
            ("output on the server", result.get("output")),
            ("saved to", str(saved) if saved is not None else None),
        ],
    )


def _source(client: Client, location: str) -> str:
    """Your own files are uploaded (the server may run elsewhere, or not read your
    folders); URLs and absolute paths that are not on this machine go as they are."""
    if "://" in location:
        return location
    if not data_files(location):
        if Path(location).expanduser().is_absolute():
            return location
        raise typer.BadParameter(f"no CSV or Parquet file, folder or glob at {location}")
    uploaded = client.upload_data(location)
    errors.print(
        f"uploaded {len(uploaded['files'])} file(s), {uploaded['bytes'] / 2**20:.1f} MB, "
        f"to {uploaded['path']}"
    )
    return str(uploaded["path"])
