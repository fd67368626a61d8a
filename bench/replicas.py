"""One hot champion at 64 connections with max_replicas=1 and =2: what a second replica on the
node's other shared runner buys.

The reference pipeline saved with skops (a built-in format, so it shares runners) is
registered twice, as `hot-r1` and `hot-r2`, and deployed with max_replicas 1 and 2 on one
`turnout serve`. Each round warms a deployment at 64 connections until `GET /api/v1/host`
shows the runners it may use holding it, measures it, and reads the host again; the rounds
alternate between the two and the report shows their medians, with the CPU the model's
runners and the whole server tree used during each measured run (from /proc).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import skops.io as sio
from tests.fixtures.models import sklearn_pipeline

from bench import peers, wrk
from bench.memory import descendants
from bench.outcome import Outcome, median_load
from bench.peers import Running
from bench.quiet import process_s
from bench.runner import Runner

CONNECTIONS = 64
REPLICAS = (1, 2)
WARM_TRIES = 4
"""Warm-ups of `--warmup` seconds at most, until the host shows the replicas in place."""


@dataclass
class Replicated:
    """One deployment's rounds: the runners holding its model before and after each."""

    max_replicas: int
    outcome: Outcome
    held_before: list[list[int]] = field(default_factory=list)
    held_after: list[list[int]] = field(default_factory=list)
    loads: list[wrk.Load] = field(default_factory=list)
    runner_cores: list[float] = field(default_factory=list)
    """CPU the runners holding the model used during each measured run, in cores."""
    server_cores: list[float] = field(default_factory=list)
    """CPU the whole server tree (gateway, host, runners) used, in cores."""


def deployment(max_replicas: int) -> str:
    return f"hot-r{max_replicas}"


def save_skops(folder: Path) -> Path:
    """The DataFrame-fitted reference pipeline (as the other turnout rows serve), as skops."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bc.skops"
    sio.dump(sklearn_pipeline(), path)
    return path


def holders(status: dict[str, Any], key: str) -> list[int]:
    """Ids of the runners holding `key` in a `GET /api/v1/host` answer."""
    return next((list(m["runners"]) for m in status["models"] if m["key"] == key), [])


def run(runner: Runner, rows: list[Replicated], *, workers: int) -> None:
    """Start one server, deploy one version per row, then measure the rows in turn."""
    results = runner.results
    home = results / "turnout-home-replicas"
    print(f"- turnout serve, {workers} worker(s), hot champion with replicas", flush=True)
    running = runner.started(
        peers.start_turnout(home=home, workers=workers, log=results / "turnout-replicas.log")
    )
    try:
        model = save_skops(results / "turnout-models")
        client = peers.turnout_client(running, home)
        for row in rows:
            name = deployment(row.max_replicas)
            client.register(name, model, flavor="sklearn")
            client.create_deployment(name, model=name, version=1, max_replicas=row.max_replicas)
        for round_ in range(1, runner.args.replica_rounds + 1):
            for row in rows:
                _round(runner, running, home, row, round_)
    finally:
        running.stop()
        for row in rows:  # rounds measured before a failure still count
            _summarise(row)


def _round(runner: Runner, running: Running, home: Path, row: Replicated, n: int) -> None:
    name = deployment(row.max_replicas)
    target = replace(running, url=running.url.replace(f"/{peers.MODEL}/", f"/{name}/"))
    row.outcome.command = running.command
    sample = target.check()
    (runner.results / f"{row.outcome.key}_response.json").write_text(sample)
    key = f"{name}:1"
    assert running.server.process is not None
    server_pid = running.server.process.pid
    start: dict[str, Any] = {}

    def warm() -> None:
        """Load until the replicas are in place, then note who holds the model and the CPU
        used so far: the measured run starts right after."""
        for _ in range(WARM_TRIES):
            wrk.run(target.url, target.body, connections=CONNECTIONS, duration_s=runner.args.warmup)
            status = peers.turnout_host(running, home)
            if len(holders(status, key)) >= row.max_replicas:
                break
        held = holders(status, key)
        pids = {int(r["pid"]) for r in status["runners"] if r["id"] in held}
        tree = descendants(server_pid)  # after the warm-up: a new replica's runner included
        cpu = {pid: process_s(pid) for pid in tree}
        start.update(held=held, pids=pids, tree=tree, cpu=cpu, at=time.monotonic())

    name_c = f"{row.outcome.key}-r{n}_c{CONNECTIONS}"
    load = runner.load(target, CONNECTIONS, runner.args.duration, name_c, prepare=warm)
    after = {pid: process_s(pid) for pid in start["tree"]}
    elapsed = time.monotonic() - start["at"]
    row.loads.append(load)
    row.held_before.append(start["held"])
    row.held_after.append(holders(peers.turnout_host(running, home), key))
    used = {pid: after[pid] - start["cpu"][pid] for pid in start["tree"]}
    row.runner_cores.append(sum(used[pid] for pid in start["pids"] if pid in used) / elapsed)
    row.server_cores.append(sum(used.values()) / elapsed)


def _summarise(row: Replicated) -> None:
    outcome = row.outcome
    if not row.loads:
        return
    outcome.loads[CONNECTIONS] = median_load(row.loads)
    rounds = ", ".join(
        f"{load.rps:.0f} req/s p99 {load.p99_ms:.2f} ms (runners {before} -> {after}; CPU "
        f"{mine:.2f} cores in them, {tree:.2f} in the server tree)"
        for load, before, after, mine, tree in zip(
            row.loads,
            row.held_before,
            row.held_after,
            row.runner_cores,
            row.server_cores,
            strict=False,
        )
    )
    outcome.notes.append(
        f"deployment `{deployment(row.max_replicas)}`, max_replicas={row.max_replicas}; "
        f"{len(row.loads)} rounds at {CONNECTIONS} connections, alternating with the other "
        f"max_replicas; the row shows the medians. Per round, with the runners holding the "
        f"model per `GET /api/v1/host` before and after it: {rounds}"
    )


def replicated_ok(row: Replicated) -> bool:
    """Whether every round ran with as many runners holding the model as it was allowed."""
    return bool(row.loads) and all(
        len(held) == row.max_replicas for held in (*row.held_before, *row.held_after)
    )


def section(rows: list[Replicated], args: argparse.Namespace) -> list[str]:
    """This scenario's part of docs/benchmarks.md (empty when it did not run)."""
    if not rows:
        return []
    workers = args.replica_workers
    lines = [
        f"## Replicas: one hot champion at {CONNECTIONS} connections",
        "",
        "The reference pipeline saved with skops (a built-in format: it shares the node's "
        f"runners) behind `turnout serve --workers {workers}`, deployed twice on the same "
        "server with `max_replicas` 1 and 2; the host has one shared runner per core. Before "
        f"each measured run, wrk warms the deployment at {CONNECTIONS} connections "
        f"({args.warmup} s, repeated up to {WARM_TRIES} times) until `GET /api/v1/host` "
        "shows as many runners holding the model as it may use; the host is read again after "
        "the run. "
        f"{args.replica_rounds} rounds alternate between the two deployments; the rows "
        "show medians, the rounds are under Configurations.",
        "",
        "| max_replicas | runners holding the model (before -> after each round) | req/s | "
        "p50 ms | p99 ms | errors | CPU in the model's runners / whole server (cores) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        load = row.outcome.at(CONNECTIONS)
        held = ", ".join(
            f"{len(b)} -> {len(a)}" for b, a in zip(row.held_before, row.held_after, strict=False)
        )
        if load is None:
            reason = (row.outcome.failure or "not run").splitlines()[0].replace("|", "/")
            lines.append(f"| {row.max_replicas} | {held or '—'} | FAILED | — | — | — | {reason} |")
            continue
        cpu = ", ".join(
            f"{mine:.2f} / {tree:.2f}"
            for mine, tree in zip(row.runner_cores, row.server_cores, strict=False)
        )
        lines.append(
            f"| {row.max_replicas} | {held} | {load.rps:.0f} | {load.p50_ms:.2f} | "
            f"{load.p99_ms:.2f} | {load.errors} | {cpu} |"
        )
    one, two = (r.outcome.at(CONNECTIONS) for r in (rows[0], rows[-1]))
    if one is not None and two is not None and one is not two:
        placed = all(replicated_ok(r) for r in rows)
        lines += [
            "",
            f"max_replicas={rows[-1].max_replicas} / max_replicas={rows[0].max_replicas}: "
            f"throughput {two.rps / one.rps:.2f}x, p99 {two.p99_ms / one.p99_ms:.2f}x. "
            + (
                "Every round ran with the replicas it was allowed in place."
                if placed
                else "**Some rounds ran without the replicas they were allowed** (see the "
                "runner counts above)."
            ),
        ]
    return [*lines, ""]
