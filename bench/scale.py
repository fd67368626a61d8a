"""Scale on one node: thousands of small models registered, deployed and answering
(DESIGN.md section 4, "scale, 1 node").

Each scenario starts its own `turnout serve` on a free loopback port with a temporary
TURNOUT_HOME and drives it through the SDK (`turnout.client.Client`) and HTTP:

- fleet: N models, one skops pipeline each, registered (versions/s) and deployed
  (deployments/s); every deployment's first request checked against the local model (p50,
  p99); PSS of the whole server process tree; warm p50 of one deployment while it is the only
  one and again once all N are deployed.
- budget (with --versions V): V versions spread over the N models, one deployment per model,
  TURNOUT_MODEL_MEMORY_MB set to hold about --budget-models models (from the memory the
  fleet's registrations measured, unless --budget-mb), then random traffic over every
  deployment: failures, latency of each deployment's first touch, evictions.

    .venv/bin/python -m bench.scale --models 20                # smoke run, well under a minute
    .venv/bin/python -m bench.scale                            # 1,000 models
    .venv/bin/python -m bench.scale --versions 10000           # and 10,000 versions in a budget
    .venv/bin/python -m bench.scale --versions 10000 --skip-fleet --budget-mb 50
    .venv/bin/python -m bench.scale --models 1000 --register-only --concurrency 1
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
from rich.console import Console

import turnout
from bench import drive
from bench.fleet import Specimen, make_fleet
from bench.memory import TreeMemory, tree_memory
from bench.process import Server, free_port, log_tail
from bench.report import revision
from bench.scale_report import SHOWN, Results, evictions_in, measures, metric_total, tables
from turnout.client import Client

ROOT = Path(__file__).resolve().parents[1]
MODEL_FLOOR_BYTES = 256 << 10
"""The least a loaded model counts against the budget (MIN_MODEL_BYTES, host/placement.py)."""
console = Console(width=max(Console().width, 110))


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--models", type=int, default=1000, help="models, one deployment each (default 1000)")
    add("--versions", type=int, default=0, help="run the budget scenario with this many versions")
    add("--budget-mb", type=int, help="TURNOUT_MODEL_MEMORY_MB of the budget scenario")
    add("--budget-models", type=int, default=200,
        help="without --budget-mb: the budget holds this many models' measured memory")  # fmt: skip
    add("--register-only", action="store_true",
        help="register, then stop: no deployments (registration at any size)")  # fmt: skip
    add("--skip-fleet", action="store_true", help="only the budget scenario (needs --budget-mb)")
    add("--workers", type=int, default=1, help="gateway worker processes (default 1)")
    add("--concurrency", type=int, default=4, help="SDK calls in flight (register, deploy)")
    add("--requests", type=int, default=2000, help="sequential requests per warm p50")
    add("--traffic", type=int, default=4000, help="random requests in the budget scenario")
    add("--traffic-concurrency", type=int, default=8, help="connections of the random traffic")
    add("--seed", type=int, default=0)
    add("--models-dir", type=Path, help="keep the generated model files here and reuse them")
    add("--out", type=Path, help="results JSON (default bench/results/scale-<time>.json)")
    args = parser.parse_args(argv)
    if args.models < 1:
        parser.error("--models must be at least 1")
    if args.versions and args.versions < args.models:
        parser.error("--versions must be at least --models (every model has a version)")
    if args.skip_fleet and not (args.versions and args.budget_mb):
        parser.error("--skip-fleet needs --versions and --budget-mb")
    return args


@dataclass
class Live:
    """A running server and the clients the bench talks to it with."""

    server: Server
    url: str
    client: Client
    http: httpx.Client

    @property
    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    def memory(self) -> TreeMemory:
        return tree_memory(self.pid)

    def evictions(self) -> float | None:
        return metric_total(self.http.get("/metrics").text, "evict")


@contextmanager
def serve(home: Path, *, workers: int, env: dict[str, str] | None = None) -> Iterator[Live]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "turnout", "serve", "--port", str(port),
               "--workers", str(workers)]  # fmt: skip
    server = Server(
        command,
        ready_url=f"{url}/v2/health/ready",
        log=home / "server.log",
        env={"TURNOUT_HOME": str(home), "TURNOUT_HOST": "127.0.0.1", **(env or {})},
    )
    server.env.pop("TURNOUT_TOKEN", None)
    server.env.pop("TURNOUT_URL", None)
    server.start()
    try:
        token = (home / "admin.token").read_text().strip()
        with Client(url, token) as client, httpx.Client(base_url=url, timeout=120) as http:
            yield Live(server, url, client, http)
    finally:
        server.stop()


def name_of(index: int) -> str:
    return f"m{index:05d}"


@dataclass(frozen=True)
class Registered:
    version: int
    memory_bytes: int | None
    """What the server measured the loaded model to take (None: not measured)."""


def register(
    live: Live, jobs: list[tuple[str, Specimen]], concurrency: int
) -> drive.Calls[Registered]:
    """Register every (model, file), in that order per model."""

    def one(model: str, specimen: Specimen) -> Registered:
        record = live.client.register(model, specimen.path, flavor="sklearn")
        memory = record.get("memory_bytes")
        return Registered(int(record["version"]), None if memory is None else int(memory))

    calls = [lambda m=m, s=s: one(m, s) for m, s in jobs]
    return drive.fan_out(
        calls, concurrency=concurrency, description=f"register {len(jobs)} versions"
    )


def deploy(live: Live, targets: list[tuple[str, int]], concurrency: int) -> drive.Calls[bool]:
    """One deployment per (model, version), named after the model."""

    def one(model: str, version: int) -> bool:
        live.client.create_deployment(model, model=model, version=version)
        return True

    calls = [lambda m=m, v=v: one(m, v) for m, v in targets]
    return drive.fan_out(calls, concurrency=concurrency, description=f"deploy {len(targets)}")


def fleet(args: argparse.Namespace, specimens: list[Specimen], home: Path, out: Results) -> None:
    """Scenario 1: N models, N deployments, first requests, memory, warm latency."""
    n = args.models
    names = [name_of(i) for i in range(n)]
    targets = list(zip(names, specimens, strict=False))
    out["models"] = n
    memory: dict[str, TreeMemory] = {}
    out["memory"] = memory
    with serve(home, workers=args.workers) as live:
        memory["idle"] = live.memory()
        registered = register(live, targets, args.concurrency)
        out["register"] = registered.summary()
        measured = [r.memory_bytes for r in registered.results if r and r.memory_bytes]
        out["model_memory_bytes_median"] = statistics.median(measured) if measured else None
        memory["registered"] = live.memory()
        if args.register_only:
            return
        solo = deploy(live, [(names[0], 1)], 1)
        first = drive.first_requests(live.http, targets[:1], description="first request")
        warm_one = drive.warm_latencies(live.http, *targets[0], requests=args.requests)
        out["deploy"] = (
            solo + deploy(live, [(m, 1) for m in names[1:]], args.concurrency)
        ).summary()
        memory["deployed"] = live.memory()
        others = drive.first_requests(live.http, targets[1:], description="first requests")
        out["first_request"] = (first + others).summary()
        warm_all = drive.warm_latencies(live.http, *targets[0], requests=args.requests)
        memory["answered"] = live.memory()
        out["warm"] = {
            "requests": args.requests,
            "p50_ms_one_deployment": drive.percentile_ms(warm_one, 50),
            "p50_ms_all_deployments": drive.percentile_ms(warm_all, 50),
            "p99_ms_one_deployment": drive.percentile_ms(warm_one, 99),
            "p99_ms_all_deployments": drive.percentile_ms(warm_all, 99),
        }
        out["evictions_metric"] = live.evictions()
        out["control_plane"] = control_plane(live, names)
    added = memory["answered"].pss_mb - memory["registered"].pss_mb
    out["pss_mb_per_deployment"] = round(added / n, 2)


CONTROL_CALLS = 20


def control_plane(live: Live, names: list[str]) -> dict[str, float | None]:
    """p50 ms of the calls operators make, with every deployment in place and answered once:
    what should not grow with the number of deployments."""
    reads = {
        "deployments list (page of 100)": "/api/v1/deployments?limit=100",
        "deployments show": f"/api/v1/deployments/{names[-1]}",
        "status (metrics, 1h)": f"/api/v1/deployments/{names[-1]}/metrics?window=1h",
        "prometheus /metrics": "/metrics",
    }
    found: dict[str, float | None] = {}
    auth = {"authorization": f"Bearer {live.client.token}"}
    for label, path in reads.items():
        times = []
        for _ in range(CONTROL_CALLS):
            started = time.perf_counter()
            live.http.get(path, headers=auth).raise_for_status()
            times.append(time.perf_counter() - started)
        found[label] = drive.percentile_ms(times, 50)
    changes = []
    for i in range(CONTROL_CALLS // 2):  # each returns once every worker serves it
        started = time.perf_counter()
        live.client.route(names[-1], log_payloads=0.5 if i % 2 == 0 else 1.0)
        changes.append(time.perf_counter() - started)
    found["routing change, acknowledged"] = drive.percentile_ms(changes, 50)
    return found


def budget(args: argparse.Namespace, specimens: list[Specimen], home: Path, out: Results) -> None:
    """Scenario 2: V versions over N models under a model memory budget, random traffic."""
    n, per_model = args.models, args.versions // args.models
    names = [name_of(i) for i in range(n)]
    jobs = [(names[i], specimens[i * per_model + j]) for i in range(n) for j in range(per_model)]
    out.update(models=n, versions=len(jobs), budget_mb=args.budget_mb)
    env = {} if args.budget_mb is None else {"TURNOUT_MODEL_MEMORY_MB": str(args.budget_mb)}
    with serve(home, workers=args.workers, env=env) as live:
        registered = register(live, jobs, args.concurrency)
        out["register"] = registered.summary()
        if args.register_only:
            return
        versions: dict[str, dict[int, Specimen]] = {m: {} for m in names}
        for (model, specimen), done in zip(jobs, registered.results, strict=True):
            if done is not None:
                versions[model][done.version] = specimen
        rng = random.Random(args.seed)
        chosen = [(m, rng.choice(sorted(versions[m]))) for m in names if versions[m]]
        deployed = deploy(live, chosen, args.concurrency)
        out["deploy"] = deployed.summary()
        targets = [
            (m, versions[m][v])
            for (m, v), ok in zip(chosen, deployed.results, strict=True)
            if ok is not None
        ]
        before = live.evictions()
        traffic = drive.random_traffic(
            live.url,
            targets,
            requests=args.traffic,
            concurrency=args.traffic_concurrency,
            seed=args.seed,
        )
        after = live.evictions()
        out["traffic"] = traffic.calls.summary()
        out["first_touch"] = {
            "requests": len(traffic.first_latencies_s),
            "p50_ms": drive.percentile_ms(traffic.first_latencies_s, 50),
            "p99_ms": drive.percentile_ms(traffic.first_latencies_s, 99),
        }
        out["evictions_metric"] = None if after is None else after - (before or 0.0)
        shown = [live.client.show_deployment(m) for m, _ in targets[:SHOWN]]
        out["evictions_shown"] = evictions_in(shown)
        out["memory"] = {"after_traffic": live.memory()}


def budget_for(fleet: Results, models: int) -> int | None:
    """A model memory budget for about `models` of the fleet's models: what the server
    measured one to take (counted at least MODEL_FLOOR_BYTES, as the host counts it), else
    the server tree's PSS per deployment."""
    measured = float(fleet.get("model_memory_bytes_median") or 0)
    if measured > 0:
        return math.ceil(models * max(measured, MODEL_FLOOR_BYTES) / 2**20)
    per_deployment = float(fleet.get("pss_mb_per_deployment") or 0)
    return max(1, round(per_deployment * models)) if per_deployment > 0 else None


def attempt(scenario: Callable[[Results], None], log: Path) -> Results:
    """Run one scenario; a failure is recorded with the server log's tail, not raised."""
    out: Results = {}
    try:
        scenario(out)
    except Exception as exc:  # the other scenario and the report still run
        console.print(f"[red]scenario failed: {type(exc).__name__}: {exc}")
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["server_log_tail"] = log_tail(log, 30)
    return out


def run(args: argparse.Namespace, work: Path) -> dict[str, Results]:
    count = max(args.models, args.versions)
    with drive.progress() as bar:
        task = bar.add_task(f"train and save {count} models", total=count)
        specimens = make_fleet(
            args.models_dir or work / "models", count, seed=args.seed,
            advance=lambda: bar.advance(task),
        )  # fmt: skip
        bar.update(task, completed=count)  # files reused from --models-dir were not counted
    results: dict[str, Results] = {}
    if not args.skip_fleet:
        home = work / "fleet-home"
        results["fleet"] = attempt(
            lambda out: fleet(args, specimens, home, out), home / "server.log"
        )
        if args.budget_mb is None:
            args.budget_mb = budget_for(results["fleet"], args.budget_models)
    if args.versions:
        home = work / "budget-home"
        if args.budget_mb is None and not args.register_only:
            results["budget"] = {"error": "no --budget-mb, and no memory per model measured"}
        else:
            results["budget"] = attempt(
                lambda out: budget(args, specimens, home, out), home / "server.log"
            )
    return results


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_path = args.out or ROOT / "bench" / "results" / f"scale-{stamp}.json"
    measured = revision()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="turnout-scale-") as tmp:
        results = run(args, Path(tmp))
    found = measures(results, args)
    for grid in tables(found):
        console.print(grid)
    report = {
        "stamp": stamp,
        "revision": measured,
        "revision_at_end": revision(),
        "turnout_source": str(Path(turnout.__file__).parent),
        "argv": sys.argv[1:] if argv is None else argv,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "cpus": os.cpu_count(),
        "load_average": Path("/proc/loadavg").read_text().split()[:3],
        "wall_s": round(time.monotonic() - started, 1),
        "measures": [asdict(m) for m in found],
        "scenarios": results,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(orjson.dumps(report, default=_plain, option=orjson.OPT_INDENT_2))
    console.print(f"results written to {out_path}")


def _plain(value: object) -> object:
    if isinstance(value, TreeMemory):
        return {k: round(v, 1) for k, v in asdict(value).items()}
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


if __name__ == "__main__":
    main()
