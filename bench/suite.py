"""The benchmark suite: turnout and its peers side by side on the reference workload.

Starts each server (turnout, MLServer, mlflow, a bare ASGI app) on loopback, warms it up,
drives it with wrk at each connection count, stops it, and writes docs/benchmarks.md plus
the raw wrk outputs under bench/results/<timestamp>/.

    make bench                                  # bash bench/run.sh: defaults, ~10 minutes
    .venv/bin/python -m bench.suite --duration 5 --only turnout,bare
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from bench import peers, replicas, venvs, wrk
from bench.outcome import Outcome, median_load
from bench.peers import Running
from bench.previous import kept_sections, read
from bench.process import leftovers
from bench.report import Context, render, revision
from bench.runner import Runner
from bench.workload import make_in_venv, turnout_models
from turnout.client import Client

ROOT = Path(__file__).resolve().parents[1]
PEERS = ("bare", "turnout", "replicas", "mlserver", "mlflow")
"""What the suite runs, in order; `replicas` is turnout's hot champion with 1 and 2 replicas."""


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__)
    parser.add_argument("--duration", type=int, default=15, help="seconds per measured wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of wrk before measuring")
    parser.add_argument("--connections", default="1,16,64", help="comma-separated counts")
    parser.add_argument("--shadow-rounds", type=int, default=2, help="off/on pairs, 16 conns")
    parser.add_argument("--replica-rounds", type=int, default=2, help="rounds per max_replicas")
    parser.add_argument("--replica-workers", type=int, default=2, help="workers, replica check")
    parser.add_argument("--quiet-cores", type=float, default=0.3,
                        help="a run starts once other work uses fewer cores, and is measured "
                        "again if other work used more meanwhile")  # fmt: skip
    parser.add_argument("--quiet-wait", type=float, default=600,
                        help="seconds to wait for other work to quieten before a run")  # fmt: skip
    parser.add_argument("--quiet-retries", type=int, default=2,
                        help="times a run shared with other work is measured again")  # fmt: skip
    parser.add_argument("--only", default=",".join(PEERS), help=f"subset of {','.join(PEERS)}")
    parser.add_argument("--mlserver-workers", default="0,1,2", help="parallel_workers to probe")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--compare-with", metavar="REV",
                        help="compare with --output as of this git revision (default: the "
                        "file as it is when the run ends)")  # fmt: skip
    args = parser.parse_args(argv)
    args.connections = [int(c) for c in args.connections.split(",")]
    args.only = [p for p in args.only.split(",") if p]
    unknown = set(args.only) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}; choose from {', '.join(PEERS)}")
    return args


class Suite(Runner):
    """The peers, in the order they run; each records its outcomes even when it fails."""

    def __init__(self, args: argparse.Namespace, results: Path) -> None:
        super().__init__(args, results)
        self.replicated: list[replicas.Replicated] = []

    def bare(self) -> None:
        one = self.outcome("bare-1w", "bare uvicorn+httptools app, 1 worker")
        two = self.outcome("bare-2w", "bare uvicorn+httptools app, 2 workers")
        with self.failing(one, two):
            model = make_in_venv(Path(sys.executable), "numpy-joblib", self.results / "bare.joblib")
            for outcome, workers in ((one, 1), (two, 2)):
                with self.failing(outcome):
                    log = self.results / f"{outcome.key}.log"
                    start = partial(peers.start_bare, model=model, workers=workers, log=log)
                    self.serve(outcome, start, single_worker=workers == 1)

    def turnout(self) -> None:
        servers: list[tuple[int, Outcome, Outcome | None, Outcome]] = []
        for workers in (1, 2):
            plural = "worker" if workers == 1 else "workers"
            champion = self.outcome(
                f"turnout-champion-{workers}w",
                f"turnout champion only, {workers} {plural}",
                turnout=True,
            )
            shadow = None  # the shadow budget is checked once, on 1 worker
            if workers == 1:
                shadow = self.outcome(
                    "turnout-shadow-1w",
                    f"turnout champion + 100% shadow, 1 worker (median of "
                    f"{self.args.shadow_rounds} rounds)",
                    turnout=True,
                )
            routed = self.outcome(
                f"turnout-routed-{workers}w",
                f"turnout routed (champion + 10% challenger + 100% shadow), {workers} {plural}",
                turnout=True,
            )
            servers.append((workers, champion, shadow, routed))
        with self.failing(*self.outcomes.values()):
            models = turnout_models(self.results / "turnout-models")
            for workers, champion, shadow, routed in servers:
                with self.failing(*(o for o in (champion, shadow, routed) if o is not None)):
                    self._turnout_server(workers, models, champion, shadow, routed)

    def _turnout_server(
        self,
        workers: int,
        models: list[Path],
        champion: Outcome,
        shadow: Outcome | None,
        routed: Outcome,
    ) -> None:
        home = self.results / f"turnout-home-{workers}w"
        print(f"- turnout serve, {workers} worker(s)", flush=True)
        running = self.started(
            peers.start_turnout(
                home=home, workers=workers, log=self.results / f"turnout-{workers}w.log"
            )
        )
        try:
            client = peers.turnout_client(running, home)
            peers.turnout_setup(client, models)
            print(f"  {champion.label}", flush=True)
            self.measure(champion, running, single_worker=workers == 1)
            if shadow is not None and 16 in self.args.connections:
                self._shadow_check(running, client, shadow)
            peers.turnout_route(client, challengers={2: 10}, shadows={3: 100})
            print(f"  {routed.label}", flush=True)
            before = peers.turnout_traffic(client)
            self.measure(routed, running, single_worker=workers == 1)
            routed.notes.append(peers.traffic_note(before, peers.turnout_traffic(client)))
            routed.notes.append(peers.host_note(peers.turnout_host(running, home)))
        finally:
            running.stop()

    def _shadow_check(self, running: Running, client: Client, shadow: Outcome) -> None:
        """Champion alone, then with a 100% shadow, alternated for `--shadow-rounds` rounds at
        16 connections (as bench/shadow_impact.py does); the medians go to the report."""
        print(f"  {shadow.label}", flush=True)
        shadow.command = running.command
        off: list[wrk.Load] = []
        on: list[wrk.Load] = []
        for round_ in range(1, self.args.shadow_rounds + 1):
            if round_ > 1:
                peers.turnout_route(client, challengers={}, shadows={})
                self.warm(running)
            off.append(
                self.load(running, 16, self.args.duration, f"{shadow.key}-off-r{round_}_c16")
            )
            peers.turnout_route(client, challengers={}, shadows={3: 100})
            running.check()
            self.warm(running)
            on.append(self.load(running, 16, self.args.duration, f"{shadow.key}-on-r{round_}_c16"))
        shadow.baseline, shadow.loads[16] = median_load(off), median_load(on)
        shadow.notes.append(
            f"{len(on)} rounds of off/on at 16 connections; the row shows the medians. "
            f"p99 off: {', '.join(f'{x.p99_ms:.2f}' for x in off)} ms; "
            f"on: {', '.join(f'{x.p99_ms:.2f}' for x in on)} ms"
        )
        shadow.not_run = {
            c: "shadow check runs at 16 only" for c in self.args.connections if c != 16
        }

    def replicas(self) -> None:
        workers = self.args.replica_workers
        plural = "worker" if workers == 1 else "workers"
        self.replicated = [
            replicas.Replicated(
                n,
                self.outcome(
                    f"turnout-replicas-{n}",
                    f"turnout hot champion (skops, shared runners), max_replicas={n}, "
                    f"{workers} {plural} (median of {self.args.replica_rounds} rounds)",
                    turnout=True,
                ),
            )
            for n in replicas.REPLICAS
        ]
        for row in self.replicated:
            row.outcome.not_run = {
                c: f"replica check runs at {replicas.CONNECTIONS} only"
                for c in self.args.connections
                if c != replicas.CONNECTIONS
            }
        with self.failing(*(row.outcome for row in self.replicated)):
            replicas.run(self, self.replicated, workers=workers)

    def mlserver(self) -> None:
        plain = self.outcome("mlserver-plain", "MLServer 1.7.1, no adaptive batching")
        batch = self.outcome("mlserver-batch", "MLServer 1.7.1, adaptive batching (64 rows / 5 ms)")
        with self.failing(plain, batch):
            log = self.results / "mlserver-install.log"
            self.installs["mlserver"] = " ".join(peers.MLSERVER_REQUIREMENTS)
            venv = venvs.ensure("mlserver", peers.MLSERVER_REQUIREMENTS, log=log)
            python = venv / "bin" / "python"
            self.versions["MLServer venv"] = venvs.versions(
                python,
                ["mlserver", "mlserver-sklearn", "scikit-learn", "uvicorn", "uvloop", "numpy"],
            )
            model = make_in_venv(python, "numpy-joblib", self.results / "mlserver.joblib")

            def start(workers: int, batching: bool, key: str) -> Running:
                return peers.start_mlserver(
                    venv=venv,
                    model=model,
                    folder=self.results / key,
                    parallel_workers=workers,
                    batching=batching,
                    log=self.results / f"{key}.log",
                )

            chosen = self.probe("MLServer parallel_workers", self.args.mlserver_workers, start)
            for outcome, batching in ((plain, False), (batch, True)):
                outcome.label += f", parallel_workers={chosen}"
                with self.failing(outcome):
                    self.serve(outcome, partial(start, chosen, batching, outcome.key))
                    outcome.notes.append(self.outcome_config(outcome.key))

    def outcome_config(self, key: str) -> str:
        folder = self.results / key
        return "; ".join(
            f"`{p.relative_to(folder)}`: `{json.dumps(json.loads(p.read_text()))}`"
            for p in sorted(folder.rglob("*.json"))
        )

    def mlflow(self) -> None:
        one = self.outcome("mlflow-1w", "mlflow models serve, 1 worker (/invocations)")
        two = self.outcome("mlflow-2w", "mlflow models serve, 2 workers (/invocations)")
        with self.failing(one, two):
            log = self.results / "mlflow-install.log"
            self.installs["mlflow"] = " ".join(peers.MLFLOW_REQUIREMENTS)
            venv = venvs.ensure("mlflow", peers.MLFLOW_REQUIREMENTS, log=log)
            python = venv / "bin" / "python"
            self.versions["mlflow venv"] = venvs.versions(
                python, ["mlflow", "scikit-learn", "uvicorn", "numpy", "pandas"]
            )
            model_dir = make_in_venv(python, "mlflow-frame", self.results / "mlflow-model")
            for outcome, workers in ((one, 1), (two, 2)):
                with self.failing(outcome):
                    log = self.results / f"{outcome.key}.log"
                    start = partial(
                        peers.start_mlflow, venv=venv, model_dir=model_dir, workers=workers, log=log
                    )
                    self.serve(outcome, start, single_worker=workers == 1)


def _at_revision(path: Path, rev: str | None) -> str:
    """`path` as committed at `rev` (empty without one)."""
    if rev is None:
        return ""
    relative = path.resolve().relative_to(ROOT)
    done = subprocess.run(
        ["git", "show", f"{rev}:{relative}"], cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"--compare-with {rev}: {done.stderr.strip()}")
    return done.stdout


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    baseline = _at_revision(args.output, args.compare_with)  # a wrong revision fails first
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results = ROOT / "bench" / "results" / stamp
    results.mkdir(parents=True)
    print(f"results in {results.relative_to(ROOT)}", flush=True)
    suite = Suite(args, results)
    measured = revision()
    suite.versions["main venv (turnout, bare app)"] = venvs.versions(
        Path(sys.executable),
        ["turnout", "scikit-learn", "uvicorn", "httptools", "uvloop", "orjson", "numpy", "fastapi"],
    )
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    for peer in PEERS:
        if peer in args.only:
            getattr(suite, peer)()
    left, anyone = leftovers(suite.sessions)
    previous = args.output.read_text() if args.output.exists() else ""  # read late: others edit it
    context = Context(
        args=args,
        argv=sys.argv[1:] if argv is None else argv,
        stamp=stamp,
        results=results,
        outcomes=list(suite.outcomes.values()),
        pilots=suite.pilots,
        installs=suite.installs,
        versions=suite.versions,
        load_before=load_before,
        load_after=Path("/proc/loadavg").read_text().split()[:3],
        load_peak=max(suite.load_averages, default=0.0),
        others=suite.others,
        shared=suite.shared,
        wall_s=time.monotonic() - started,
        leftovers=left,
        server_processes=anyone,
        revisions=(measured, revision()),
        replicated=suite.replicated,
        previous=read(baseline or previous),
    )
    others = kept_sections(previous)
    args.output.write_text(render(context) + (f"\n{others}\n" if others else ""))
    print(f"wrote {args.output} in {context.wall_s:.0f} s", flush=True)
    if left:
        print("processes left behind:\n" + "\n".join(left), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
