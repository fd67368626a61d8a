"""Render one suite run as docs/benchmarks.md: setup, a table per connection count, ratios of
turnout's configurations to each peer, and the DESIGN.md section 4 budgets, met or missed."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import previous, replicas
from bench.budgets import Verdict, verdicts
from bench.outcome import Outcome, Pilot, best
from bench.previous import Previous
from bench.replicas import Replicated

ROOT = Path(__file__).resolve().parents[1]
PEER_COLUMNS = (
    ("MLServer best", ("mlserver-plain", "mlserver-batch")),
    ("mlflow best", ("mlflow-1w", "mlflow-2w")),
    ("bare, 1 worker", ("bare-1w",)),
    ("bare, 2 workers", ("bare-2w",)),
)


@dataclass(frozen=True, kw_only=True)
class Context:
    args: argparse.Namespace
    argv: list[str]
    stamp: str
    results: Path
    outcomes: list[Outcome]
    pilots: list[Pilot]
    installs: dict[str, str]
    versions: dict[str, dict[str, str]]
    load_before: list[str]
    load_after: list[str]
    load_peak: float
    others: list[float]
    """Cores other work used during each measured run (the runs kept)."""
    shared: list[str]
    """Raw outputs of runs discarded and measured again because other work shared them."""
    wall_s: float
    leftovers: list[str]
    server_processes: list[str]
    revisions: tuple[str, str]
    """The checkout measured: at the start of the run and at its end."""
    replicated: list[Replicated] = field(default_factory=list)
    """The hot champion's rows with max_replicas 1 and 2 (empty when not run)."""
    previous: Previous = field(default_factory=Previous)
    """What the report this run replaces said, for the comparison section."""

    def get(self, key: str) -> Outcome | None:
        return next((o for o in self.outcomes if o.key == key), None)

    def group(self, keys: tuple[str, ...]) -> list[Outcome]:
        return [o for o in self.outcomes if o.key in keys]


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "?"


def revision() -> str:
    """HEAD's short hash, marked when src/ has uncommitted edits (others work beside the run)."""
    dirty = _git("status", "--porcelain", "--", "src")
    return _git("rev-parse", "--short", "HEAD") + (
        " with uncommitted edits in src/" if dirty else ""
    )


def _machine() -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return [
        f"- CPU: {os.cpu_count()} cores (`nproc`), {cpu}",
        f"- RAM: {mem_kb / 1024 / 1024:.1f} GiB",
        f"- OS: {platform.platform()}; Python {platform.python_version()}",
    ]


def _cell(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _result_table(ctx: Context, connections: int) -> list[str]:
    rows = [
        "| configuration | req/s | p50 ms | p99 ms | errors | prediction logging |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for outcome in ctx.outcomes:
        logging = "on (every answer, with inputs and outputs)" if outcome.turnout else "n/a"
        load = outcome.at(connections)
        if load is not None:
            rows.append(
                f"| {outcome.label} | {load.rps:.0f} | {_cell(load.p50_ms)} | "
                f"{_cell(load.p99_ms)} | {load.errors} | {logging} |"
            )
        elif connections in outcome.not_run:
            rows.append(f"| {outcome.label} | — | — | — | — | {outcome.not_run[connections]} |")
        else:
            reason = (outcome.failure or "not run").splitlines()[0].replace("|", "/")
            rows.append(f"| {outcome.label} | FAILED | — | — | — | {reason} |")
    picks = [
        f"{name}: {winner.label}"
        for name, keys in PEER_COLUMNS
        if len(keys) > 1 and (winner := best(ctx.group(keys), connections)) is not None
    ]
    if picks:
        rows += ["", "Best per peer at this connection count: " + "; ".join(picks) + "."]
    return rows


def _ratio_table(ctx: Context, connections: int) -> list[str]:
    head = "| turnout configuration | " + " | ".join(name for name, _ in PEER_COLUMNS) + " |"
    rows = [head, "| --- |" + " ---: |" * len(PEER_COLUMNS)]
    for outcome in (o for o in ctx.outcomes if o.turnout):
        mine = outcome.at(connections)
        if mine is None:
            continue
        cells = []
        for _, keys in PEER_COLUMNS:
            peer = best(ctx.group(keys), connections)
            theirs = peer.at(connections) if peer else None
            cells.append(
                f"{mine.rps / theirs.rps:.2f}x / {mine.p99_ms / theirs.p99_ms:.2f}x"
                if theirs and theirs.rps and theirs.p99_ms
                else "—"
            )
        rows.append(f"| {outcome.label} | " + " | ".join(cells) + " |")
    return rows


def _budget_table(found: list[Verdict]) -> list[str]:
    rows = ["| budget (DESIGN.md §4) | measured | verdict |", "| --- | --- | --- |"]
    rows += [f"| {v.budget} | {v.measured} | {v.verdict} |" for v in found]
    return rows


def _versions(ctx: Context) -> list[str]:
    rows = ["| environment | packages |", "| --- | --- |"]
    for env, packages in ctx.versions.items():
        rows.append(f"| {env} | " + ", ".join(f"{p} {v}" for p, v in packages.items()) + " |")
    return rows


def _configurations(ctx: Context) -> list[str]:
    lines = []
    for outcome in ctx.outcomes:
        lines.append(f"- **{outcome.label}**")
        if outcome.command:
            lines.append(f"  - `{outcome.command}`")
        lines += [f"  - {note}" for note in outcome.notes]
        if outcome.failure:
            failure = outcome.failure.replace("\n", "\n    ")
            lines.append(f"  - failed:\n\n    ```\n    {failure}\n    ```")
    return lines


def _pilots(ctx: Context) -> list[str]:
    if not ctx.pilots:
        return ["(no probes this run)"]
    rows = ["| peer setting | req/s at 16 | p99 ms | note |", "| --- | ---: | ---: | --- |"]
    for pilot in ctx.pilots:
        if pilot.load is None:
            reason = (pilot.failure or "").splitlines()[0].replace("|", "/")
            rows.append(f"| {pilot.peer}={pilot.setting} | — | — | failed: {reason} |")
        else:
            rows.append(
                f"| {pilot.peer}={pilot.setting} | {pilot.load.rps:.0f} | "
                f"{_cell(pilot.load.p99_ms)} | |"
            )
    return rows


def render(ctx: Context) -> str:
    args = ctx.args
    date = datetime.strptime(ctx.stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    commit = f"`{ctx.revisions[0]}`"
    if ctx.revisions[1] != ctx.revisions[0]:
        commit += f" (at the end of the run: `{ctx.revisions[1]}`)"
    lines = [
        "# Benchmarks",
        "",
        f"Measured {date:%Y-%m-%d %H:%M} UTC at commit {commit} by `make bench` "
        f"(`bench/suite.py`); the suite took {ctx.wall_s / 60:.1f} minutes. This file is "
        "rewritten by every run; raw wrk outputs are in "
        f"`{_rel(ctx.results)}/` (gitignored).",
        "",
        "Reference workload: scikit-learn pipeline (StandardScaler + LogisticRegression, "
        "max_iter=500) fitted on the breast-cancer data, one row (30 floats) per request, "
        "wrk on loopback. Every server binds 127.0.0.1 and is started and stopped by the suite. "
        "Ratios are turnout / peer, measured in the same run.",
        "",
        "## Budgets",
        "",
        *_budget_table(verdicts(ctx.outcomes)),
        "",
    ]
    for connections in args.connections:
        word = "connection" if connections == 1 else "connections"
        lines += [f"## {connections} {word}", "", *_result_table(ctx, connections), ""]
        lines += [
            "Ratios, turnout / peer: throughput (higher is better for turnout) / p99 "
            "(lower is better for turnout).",
            "",
            *_ratio_table(ctx, connections),
            "",
        ]
    lines += replicas.section(ctx.replicated, ctx.args)
    lines += previous.section(ctx.previous, verdicts=verdicts(ctx.outcomes), outcomes=ctx.outcomes)
    lines += _setup(ctx)
    return "\n".join(lines) + "\n"


def _others(ctx: Context) -> str:
    if not ctx.others:
        return "- other work during the measured runs: nothing measured"
    limit = ctx.args.quiet_cores
    over = sum(1 for x in ctx.others if x >= limit)
    again = (
        f"{len(ctx.shared)} runs shared with other work were measured again "
        f"({', '.join(f'`{name}`' for name in ctx.shared)})"
        if ctx.shared
        else "no run had to be measured again"
    )
    return (
        "- other work during the measured runs (CPU from /proc/stat minus the suite, wrk and "
        f"the server tree, `bench/quiet.py`): median {statistics.median(ctx.others):.2f}, "
        f"highest {max(ctx.others):.2f} cores; each run started once other work used under "
        f"{limit:g} cores, {again}; {over} of the {len(ctx.others)} runs kept still shared "
        f"the machine with {limit:g} cores or more of other work."
    )


def _setup(ctx: Context) -> list[str]:
    args = ctx.args
    files = sorted(p.name for p in ctx.results.glob("*.txt"))
    left = ctx.leftovers or ["none"]
    others = ctx.server_processes and not ctx.leftovers
    return [
        "## Setup",
        "",
        "### Machine",
        "",
        *_machine(),
        f"- load average (1/5/15 min) before: {' '.join(ctx.load_before)}; "
        f"after: {' '.join(ctx.load_after)}; highest 1-minute load after a measured run: "
        f"{ctx.load_peak:.2f} (wrk plus a saturated server account for about 2-3; more means "
        "other work shared the machine). wrk and the server compete for the same 2 cores; "
        "each raw output records the load average after its run.",
        _others(ctx),
        "",
        "### Versions",
        "",
        *_versions(ctx),
        "",
        "### Commands",
        "",
        f"- suite: `{' '.join(['.venv/bin/python', '-m', 'bench.suite', *ctx.argv])}` "
        "(`make bench` runs `bash bench/run.sh`, which runs this with its arguments)",
        f"- wrk, per measurement: `wrk -t2 -c<N> -d{args.duration}s --latency --timeout 5s "
        "-s <script>.lua <url>` (`-t1` at 1 connection); warm-up "
        f"{args.warmup} s at 16 connections after each start and each routing change. "
        "Scripts: `oip.lua` (OIP v2 body), `mlflow.lua` (dataframe_split body).",
        *(
            f"- {peer} venv (`bench/.venvs/{peer}`): `pip install {req}`"
            for peer, req in ctx.installs.items()
        ),
        "",
        "### Configurations",
        "",
        *_configurations(ctx),
        "",
        "### Worker-setting probes (16 connections, short runs; best kept)",
        "",
        *_pilots(ctx),
        "",
        "### Notes",
        "",
        *NOTES,
        "",
        "### Raw outputs",
        "",
        f"In `{_rel(ctx.results)}/`: " + ", ".join(f"`{f}`" for f in files) + "; server logs "
        "(`*.log`), sample responses (`*_response.json`) and peer configs beside them.",
        "",
        f"Server processes of this run left at the end: {'; '.join(left)}. "
        f'`pgrep -af "mlserver|uvicorn|turnout serve|mlflow"` at the end: '
        f"{'; '.join(ctx.server_processes) or 'empty'}"
        + (" (not started by this run: other work on the machine)." if others else "."),
    ]


NOTES = [
    "- Request formats: turnout, MLServer and the bare app get the same OIP v2 body "
    '(`{"inputs":[{"name":"input-0","shape":[1,30],"datatype":"FP64","data":[...]}]}` '
    "to `/v2/models/bc/infer`). mlflow has no OIP endpoint: it gets the same row as "
    '`{"dataframe_split":{"columns":[...30 names...],"data":[[...]]}}` to `/invocations`.',
    "- Models: turnout and mlflow serve the DataFrame-fitted pipeline (named columns, as "
    "`tests/fixtures/models.py::sklearn_pipeline()`); turnout's three versions differ only "
    "in C (1.0, 0.5, 2.0). MLServer and the bare app get a numpy-fitted twin (same pipeline, "
    "no feature names), since their input is a plain array and a DataFrame-fitted pipeline "
    "warns about missing feature names on every array call. Each peer fits its model "
    "with its own venv's scikit-learn (`bench/make_model.py`).",
    "- Work per request differs slightly: turnout answers `predict` and `predict_proba`; "
    "MLServer, mlflow and the bare app answer `predict` only.",
    "- Every turnout row runs with prediction logging on, as turnout ships: each answer "
    "(shadow answers included) is written to the prediction log with its inputs and "
    "outputs; MLServer, mlflow and the bare app log nothing.",
    "- turnout runs its models in the node's model host (`TURNOUT_RUNNER=process`, the "
    "default), shared by its gateway workers. The suite's three versions are joblib files, "
    "which carry code, so each gets a runner of its own; the replica check's skops file "
    "shares the pool's runners. What `GET /api/v1/host` showed is under Configurations.",
    "- The routed configuration's shadow is version 3 of the same model (a real second "
    "`predict` per request, on the same 2 cores); `bench/shadow_impact.py` checks "
    "isolation from a slow (1 s) shadow instead.",
    "- MLServer runs with `debug: false` (no access log), metrics endpoint on (its default). "
    "mlflow runs with its uvicorn access log off (`UVICORN_ACCESS_LOG=false`), as turnout "
    "and the bare app do. MLServer's `parallel_workers` comes from the probes above; "
    "mlflow and the bare app are measured with 1 and 2 uvicorn workers.",
    "- Multi-worker configurations are not run at 1 connection: one connection keeps "
    "one worker busy, so the row would repeat the 1-worker one.",
    "- turnout is installed editable: each `turnout serve` start runs `src/` as it is at that "
    "moment, and `src/` may change while a run goes on (the commit line above says whether "
    "it had uncommitted edits or moved during the run).",
]
