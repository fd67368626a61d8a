"""The benchmark suite: turnout and its peers side by side on the reference workload.

Starts each server (turnout, MLServer, mlflow, a bare ASGI app) on loopback, warms it up,
drives it with wrk at each connection count, stops it, and writes docs/benchmarks.md plus
the raw wrk outputs under bench/results/<timestamp>/.

    make bench                                  # bash bench/run.sh: defaults, ~10 minutes
    .venv/bin/python -m bench.suite --duration 5 --only turnout,bare
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from bench import peers, venvs, wrk
from bench.outcome import Outcome, Pilot
from bench.peers import Running
from bench.process import leftovers
from bench.report import Context, render, revision
from bench.workload import make_in_venv, turnout_models

ROOT = Path(__file__).resolve().parents[1]
PEERS = ("bare", "turnout", "mlserver", "mlflow")


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__)
    parser.add_argument("--duration", type=int, default=15, help="seconds per measured wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of wrk before measuring")
    parser.add_argument("--connections", default="1,16,64", help="comma-separated counts")
    parser.add_argument("--only", default=",".join(PEERS), help=f"subset of {','.join(PEERS)}")
    parser.add_argument("--mlserver-workers", default="0,1,2", help="parallel_workers to probe")
    parser.add_argument("--mlflow-workers", default="1,2", help="mlflow -w values to probe")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    args.connections = [int(c) for c in args.connections.split(",")]
    args.only = [p for p in args.only.split(",") if p]
    unknown = set(args.only) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}; choose from {', '.join(PEERS)}")
    return args


def _reason(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text if len(text) < 1200 else text[:1200] + " ..."


class Suite:
    def __init__(self, args: argparse.Namespace, results: Path) -> None:
        self.args = args
        self.results = results
        self.outcomes: dict[str, Outcome] = {}
        self.pilots: list[Pilot] = []
        self.installs: dict[str, str] = {}
        self.versions: dict[str, dict[str, str]] = {}
        self.scripts: dict[str, Path] = {}
        self.sessions: list[int] = []
        """Process-group ids of every server started, to prove none is left at the end."""

    # -- measuring --------------------------------------------------------------------------

    def outcome(self, key: str, label: str, *, turnout: bool = False) -> Outcome:
        self.outcomes[key] = Outcome(key, label, turnout=turnout)
        return self.outcomes[key]

    @contextlib.contextmanager
    def failing(self, *outcomes: Outcome) -> Iterator[None]:
        """A peer that fails to install, start or answer is reported, and the suite goes on."""
        try:
            yield
        except Exception as error:
            print(f"  FAILED: {_reason(error).splitlines()[0]}", flush=True)
            for outcome in outcomes:
                if outcome.failure is None and len(outcome.loads) < len(self.args.connections):
                    outcome.failure = _reason(error)

    def script(self, running: Running) -> Path:
        name = "mlflow.lua" if "invocations" in running.url else "oip.lua"
        if name not in self.scripts:
            self.scripts[name] = wrk.write_script(running.body, self.results / name)
        return self.scripts[name]

    def load(self, running: Running, connections: int, duration_s: int, name: str) -> wrk.Load:
        load = wrk.run(
            running.url,
            running.body,
            connections=connections,
            duration_s=duration_s,
            script=self.script(running),
        )
        (self.results / f"{name}.txt").write_text(f"$ {shlex.join(load.command)}\n\n{load.raw}")
        print(
            f"  {name:34} {load.rps:9.0f} req/s  p50 {load.p50_ms:7.2f} ms"
            f"  p99 {load.p99_ms:8.2f} ms  errors {load.errors}",
            flush=True,
        )
        return load

    def warm(self, running: Running) -> None:
        wrk.run(running.url, running.body, connections=16, duration_s=self.args.warmup)

    def measure(self, outcome: Outcome, running: Running, *, single_worker: bool = True) -> None:
        outcome.command = running.command
        sample = running.check()
        (self.results / f"{outcome.key}_response.json").write_text(sample)
        self.warm(running)
        for connections in self.args.connections:
            if connections == 1 and not single_worker:
                outcome.not_run[1] = "not run: one connection keeps one worker busy"
                continue
            name = f"{outcome.key}_c{connections}"
            outcome.loads[connections] = self.load(running, connections, self.args.duration, name)

    # -- peers ------------------------------------------------------------------------------

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

    def started(self, running: Running) -> Running:
        if running.server.process is not None:
            self.sessions.append(running.server.process.pid)
        return running

    def serve(
        self, outcome: Outcome, start: Callable[[], Running], *, single_worker: bool = True
    ) -> None:
        print(f"- {outcome.label}", flush=True)
        running = self.started(start())
        try:
            self.measure(outcome, running, single_worker=single_worker)
        finally:
            running.stop()

    def turnout(self) -> None:
        models = turnout_models(self.results / "turnout-models")
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
                    "turnout-shadow-1w", "turnout champion + 100% shadow, 1 worker", turnout=True
                )
            routed = self.outcome(
                f"turnout-routed-{workers}w",
                f"turnout routed (champion + 10% challenger + 100% shadow), {workers} {plural}",
                turnout=True,
            )
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
                peers.turnout_route(client, challengers={}, shadows={3: 100})
                shadow.command = running.command
                running.check()
                self.warm(running)
                print(f"  {shadow.label}", flush=True)
                shadow.loads[16] = self.load(running, 16, self.args.duration, f"{shadow.key}_c16")
                shadow.not_run = {
                    c: "shadow check runs at 16 only" for c in self.args.connections if c != 16
                }
            peers.turnout_route(client, challengers={2: 10}, shadows={3: 100})
            print(f"  {routed.label}", flush=True)
            before = peers.turnout_traffic(client)
            self.measure(routed, running, single_worker=workers == 1)
            routed.notes.append(peers.traffic_note(before, peers.turnout_traffic(client)))
        finally:
            running.stop()

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
            f"{p.relative_to(folder)}: {p.read_text().replace(chr(10), ' ')}"
            for p in sorted(folder.rglob("*.json"))
        )

    def mlflow(self) -> None:
        outcome = self.outcome("mlflow", "mlflow models serve (/invocations, dataframe_split)")
        with self.failing(outcome):
            log = self.results / "mlflow-install.log"
            self.installs["mlflow"] = " ".join(peers.MLFLOW_REQUIREMENTS)
            venv = venvs.ensure("mlflow", peers.MLFLOW_REQUIREMENTS, log=log)
            python = venv / "bin" / "python"
            self.versions["mlflow venv"] = venvs.versions(
                python, ["mlflow", "scikit-learn", "uvicorn", "numpy", "pandas"]
            )
            model_dir = self.results / "mlflow-model"
            if not model_dir.exists():
                make_in_venv(python, "mlflow-frame", model_dir)

            def start(workers: int, _: bool, key: str) -> Running:
                return peers.start_mlflow(
                    venv=venv, model_dir=model_dir, workers=workers, log=self.results / f"{key}.log"
                )

            chosen = self.probe("mlflow workers", self.args.mlflow_workers, start)
            outcome.label = f"mlflow models serve, {chosen} worker(s) (/invocations)"
            self.serve(outcome, lambda: start(chosen, False, "mlflow"))

    def probe(self, peer: str, candidates: str, start: Callable[[int, bool, str], Running]) -> int:
        """Short 16-connection runs of each worker setting; the best throughput is kept."""
        settings = [int(c) for c in candidates.split(",")]
        if len(settings) == 1:
            return settings[0]
        duration = min(5, self.args.duration)
        scores: dict[int, float] = {}
        for setting in settings:
            key = f"pilot-{peer.split()[0].lower()}-{setting}"
            print(f"- pilot {peer}={setting}", flush=True)
            try:
                running = self.started(start(setting, False, key))
                try:
                    running.check()
                    wrk.run(running.url, running.body, connections=16, duration_s=2)
                    load = self.load(running, 16, duration, f"{key}_c16")
                finally:
                    running.stop()
            except Exception as error:
                self.pilots.append(Pilot(peer, str(setting), None, _reason(error)))
                continue
            self.pilots.append(Pilot(peer, str(setting), load))
            scores[setting] = load.rps
        if not scores:
            raise RuntimeError(f"every {peer} setting failed to start; see the pilot rows")
        return max(scores, key=lambda s: scores[s])


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
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
        wall_s=time.monotonic() - started,
        leftovers=left,
        server_processes=anyone,
        revisions=(measured, revision()),
    )
    args.output.write_text(render(context))
    print(f"wrote {args.output} in {context.wall_s:.0f} s", flush=True)
    if left:
        print("processes left behind:\n" + "\n".join(left), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
