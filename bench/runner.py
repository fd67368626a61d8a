"""Measuring machinery of the suite: wrk runs per connection count, warm-ups, probes of a
peer's worker setting, raw outputs saved, and failures recorded instead of raised."""

from __future__ import annotations

import argparse
import contextlib
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path

from bench import wrk
from bench.outcome import Outcome, Pilot
from bench.peers import Running
from bench.quiet import Meter, wait_quiet


def reason(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text if len(text) < 1200 else text[:1200] + " ..."


class Runner:
    """Starts servers, warms them, runs wrk, keeps every raw output and every outcome."""

    def __init__(self, args: argparse.Namespace, results: Path) -> None:
        self.args = args
        self.results = results
        self.outcomes: dict[str, Outcome] = {}
        self.pilots: list[Pilot] = []
        self.installs: dict[str, str] = {}
        self.versions: dict[str, dict[str, str]] = {}
        self.scripts: dict[str, Path] = {}
        self.load_averages: list[float] = []
        """The 1-minute load average after each measured run: a noise gauge for the report."""
        self.others: list[float] = []
        """Cores other work kept busy during each measured run (bench/quiet.py)."""
        self.shared: list[str] = []
        """Raw outputs of runs measured again because other work shared the machine."""
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
            print(f"  FAILED: {reason(error).splitlines()[0]}", flush=True)
            for outcome in outcomes:
                if outcome.failure is None and len(outcome.loads) < len(self.args.connections):
                    outcome.failure = reason(error)

    def script(self, running: Running) -> Path:
        name = "mlflow.lua" if "invocations" in running.url else "oip.lua"
        if name not in self.scripts:
            self.scripts[name] = wrk.write_script(running.body, self.results / name)
        return self.scripts[name]

    def load(
        self,
        running: Running,
        connections: int,
        duration_s: int,
        name: str,
        *,
        prepare: Callable[[], None] | None = None,
    ) -> wrk.Load:
        """One measured wrk run, saved as <name>.txt. It starts once other work on the machine
        is quiet (`--quiet-cores`, waiting `--quiet-wait` s at most), after `prepare`; a run
        that other work shared is kept as <name>.shared-<n>.txt and measured again, up to
        `--quiet-retries` times."""
        server_pid = running.server.process.pid if running.server.process else None
        for attempt in range(1, self.args.quiet_retries + 2):
            wait_quiet(server_pid, cores=self.args.quiet_cores, max_wait_s=self.args.quiet_wait)
            if prepare is not None:
                prepare()
            meter = Meter(server_pid)
            load = self._wrk(running, connections, duration_s, name)
            others = meter.others_cores()
            if others < self.args.quiet_cores or attempt > self.args.quiet_retries:
                break
            (self.results / f"{name}.shared-{attempt}.txt").write_text(self._record(load, others))
            self.shared.append(f"{name}.shared-{attempt}.txt")
            print(f"  {name}: other work used {others:.2f} cores meanwhile; again", flush=True)
        load_avg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        self.load_averages.append(float(load_avg.split()[0]))
        self.others.append(others)
        (self.results / f"{name}.txt").write_text(self._record(load, others))
        print(
            f"  {name:34} {load.rps:9.0f} req/s  p50 {load.p50_ms:7.2f} ms"
            f"  p99 {load.p99_ms:8.2f} ms  errors {load.errors}  others {others:.2f} cores",
            flush=True,
        )
        return load

    def _wrk(self, running: Running, connections: int, duration_s: int, name: str) -> wrk.Load:
        """wrk once; output it cannot read is kept as <name>.failed-<n>.txt and run again."""
        attempt = 1
        while True:
            try:
                return wrk.run(
                    running.url,
                    running.body,
                    connections=connections,
                    duration_s=duration_s,
                    script=self.script(running),
                )
            except wrk.WrkError as error:
                (self.results / f"{name}.failed-{attempt}.txt").write_text(
                    f"{error}\n\n{error.raw}"
                )
                print(f"  {name}: {error} (attempt {attempt})", flush=True)
                if attempt == 2:
                    raise
                attempt += 1

    @staticmethod
    def _record(load: wrk.Load, others: float) -> str:
        load_avg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        return (
            f"$ {shlex.join(load.command)}\n# load average after the run: {load_avg}\n"
            f"# other work during the run (besides wrk and the server tree): {others:.2f} cores"
            f"\n\n{load.raw}"
        )

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
                self.pilots.append(Pilot(peer, str(setting), None, reason(error)))
                continue
            self.pilots.append(Pilot(peer, str(setting), load))
            scores[setting] = load.rps
        if not scores:
            raise RuntimeError(f"every {peer} setting failed to start; see the pilot rows")
        return max(scores, key=lambda s: scores[s])
