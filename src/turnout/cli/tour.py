"""The quickstart's tour: train, register, deploy and serve on data bundled with scikit-learn."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from turnout.cli.monitoring import render_status
from turnout.cli.output import console, table
from turnout.client import ApiError, Client, ServerUnreachable
from turnout.errors import TurnoutError
from turnout.settings import DEFAULT_PORT, Settings

MODEL = "breast-cancer"
DEPLOYMENT = "breast-cancer-prod"


@dataclass
class Server:
    """A `turnout serve` the quickstart started itself (None when it reuses one)."""

    process: subprocess.Popen[bytes]
    home: Path
    url: str
    temporary: bool

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        if self.temporary:
            shutil.rmtree(self.home, ignore_errors=True)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(home: Path, port: int, temporary: bool) -> Server:
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TURNOUT_HOME": str(home), "TURNOUT_URL": url}
    env.setdefault("TURNOUT_CONTROLLER_INTERVAL_MS", "500")  # the tour's rollouts move quickly
    env.pop("TURNOUT_TOKEN", None)
    env.pop("TURNOUT_DATABASE_URL", None)
    env.pop("TURNOUT_ARTIFACT_ROOT", None)
    home.mkdir(parents=True, exist_ok=True)
    log = (home / "server.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "turnout", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Server(process, home, url, temporary)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TurnoutError(f"the server exited:\n{(home / 'server.log').read_text()[-2000:]}")
        if (home / "admin.token").exists() and Client(url, "-").ready():
            return server
        time.sleep(0.1)
    server.stop()
    raise TurnoutError("the server did not become ready within 60 s")


def existing_server() -> Client | None:
    """A running server at TURNOUT_URL that accepts our token, if there is one."""
    settings = Settings()
    client = Client()
    try:
        client.whoami()
    except (ServerUnreachable, ApiError):
        client.close()
        return None
    console.print(f"using the running server at {settings.server_url}")
    return client


def _train(data: pd.DataFrame, target: pd.Series, c: float) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000)).fit(data, target)


GRADED: list[dict[str, Any]] = []
"""(prediction id, true label) of every request the tour sent, posted as actuals at the end."""


def _send_traffic(
    client: Client, rows: pd.DataFrame, truth: pd.Series, label: str, deployment: str = DEPLOYMENT
) -> list[tuple[object, ...]]:
    """One request per row, alternating the native API and OIP, with a progress bar.

    Returns one table row per (version, role) that answered: requests, accuracy, latency.
    """
    answers: dict[tuple[int, str], list[tuple[object, object, float]]] = {}
    columns = list(rows.columns)
    progress = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    )
    with progress:
        task = progress.add_task(label, total=len(rows))
        for i, (row, actual) in enumerate(zip(rows.itertuples(index=False), truth, strict=True)):
            started = time.perf_counter()
            if i % 2:
                answer = client.predict(deployment, [dict(zip(columns, row, strict=True))])
                predicted, version, role = (
                    answer["predictions"][0],
                    int(answer["model_version"]),
                    answer["role"],
                )
                prediction_id = answer["prediction_ids"][0]
            else:
                tensor = {"name": "input-0", "shape": [1, len(row)], "datatype": "FP64",
                          "data": list(row)}  # fmt: skip
                answer = client.infer(deployment, {"inputs": [tensor]})
                predicted = answer["outputs"][0]["data"][0]
                version, role = int(answer["model_version"]), answer["parameters"]["role"]
                prediction_id = answer["id"]
            if deployment == DEPLOYMENT:
                GRADED.append({"prediction_id": prediction_id, "actual": int(actual)})
            latency = (time.perf_counter() - started) * 1000
            answers.setdefault((version, role), []).append((predicted, actual, latency))
            progress.advance(task)
    summary: list[tuple[object, ...]] = []
    for (version, role), seen in sorted(answers.items()):
        predicted, actual, latencies = zip(*seen, strict=True)
        summary.append((
            version, role, len(seen), f"{accuracy_score(actual, predicted):.3f}",
            f"{np.percentile(latencies, 50):.2f}", f"{np.percentile(latencies, 99):.2f}",
        ))  # fmt: skip
    return summary


TRAFFIC_COLUMNS = ["version", "role", "requests", "accuracy", "p50 ms", "p99 ms"]


def tour(client: Client, n_requests: int, *, temporary: bool) -> None:
    data, target = load_breast_cancer(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(
        data, target, test_size=0.3, random_state=7, stratify=target
    )
    workdir = Path(tempfile.mkdtemp(prefix="turnout-models-"))
    try:
        training = x_train.copy()
        training["target"] = y_train
        training_csv = workdir / "train.csv"
        training.to_csv(training_csv, index=False)
        registered = []
        for c in (0.001, 1.0):
            model = _train(x_train, y_train, c)
            path = workdir / f"model-c{c}.joblib"
            joblib.dump(model, path)
            metrics = {
                "accuracy": float(accuracy_score(y_test, model.predict(x_test))),
                "roc_auc": float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])),
            }
            record = client.register(
                MODEL, path, flavor="sklearn", metrics=metrics, params={"C": str(c)},
                training_data=training_csv, target="target",
                description=f"StandardScaler + LogisticRegression(C={c})",
            )  # fmt: skip
            registered.append(record)
            console.print(
                f"registered [bold]{record['ref']}[/bold]: holdout accuracy "
                f"{metrics['accuracy']:.3f}, ROC AUC {metrics['roc_auc']:.3f}"
            )
        _lifecycle(client, registered, x_test, y_test, n_requests)
        _actuals_and_status(client)
        _rollouts(client, workdir, training_csv, registered, x_test)
        _resilience(client, workdir, training_csv, registered[1]["version"], x_test, y_test)
        _retraining(client, workdir, training_csv, x_train, y_train, data, target)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _next_steps(client, temporary, registered[1]["version"])


def _lifecycle(
    client: Client, registered: list[Any], x_test: pd.DataFrame, y_test: pd.Series, n_requests: int
) -> None:
    """Champion alone, shadow warm-up, champion/challenger, blue-green promote, rollback."""
    champion = registered[0]["version"]
    try:
        client.create_deployment(DEPLOYMENT, model=MODEL, version=champion, timeout_ms=200)
        console.print(f"deployed {MODEL}:{champion} as [bold]{DEPLOYMENT}[/bold]")
    except ApiError as exc:
        if exc.status != 409:
            raise
        console.print(f"deployment {DEPLOYMENT} already exists; sending traffic to it")
    challenger = registered[1]["version"]
    per_phase = max(n_requests // 4, 10)
    rows = x_test.sample(per_phase * 4, replace=per_phase * 4 > len(x_test), random_state=1)
    phases = iter(np.array_split(np.arange(len(rows)), 4))

    def phase(title: str) -> None:
        part = rows.iloc[next(phases)]
        table(title, TRAFFIC_COLUMNS, _send_traffic(client, part, y_test.loc[part.index], title))

    phase(f"1. champion {MODEL}:{champion} alone")

    client.route(DEPLOYMENT, shadows={challenger: 100})
    console.print(
        f"\n[bold]warm-up[/bold]: {MODEL}:{challenger} shadows every request "
        "(its answers are recorded, never returned)"
    )
    phase("2. with a shadow (callers only see the champion)")
    shadow = _shadow_row(client, challenger)
    if shadow:
        console.print(
            f"shadow {MODEL}:{challenger}: {shadow['requests']} copies, "
            f"agreement with the champion {shadow['agreement_rate'] or 0:.1%}, "
            f"p50 {shadow['latency_p50_ms'] or 0:.2f} ms"
        )

    client.route(DEPLOYMENT, challengers={challenger: 30}, clear=True)
    console.print(
        f"\n[bold]champion/challenger[/bold]: {MODEL}:{challenger} answers 30% of live traffic"
    )
    phase("3. champion and challenger (A/B)")

    promoted = client.promote(DEPLOYMENT, version=challenger)
    console.print(
        f"\n[bold]blue-green promote[/bold]: {MODEL}:{challenger} is champion at revision "
        f"{promoted['revision']}; {MODEL}:{champion} stays loaded as standby"
    )
    phase("4. after the promote")

    rolled = client.rollback(DEPLOYMENT)
    console.print(
        f"\n[bold]rollback[/bold]: revision {rolled['revision']} re-activates "
        f"{rolled['reason'].removeprefix('rollback to ')} (acknowledged by "
        f"{len(rolled['workers'])} worker(s))"
    )
    history = client.history(DEPLOYMENT)
    table(
        f"history of {DEPLOYMENT}",
        ["revision", "champion", "reason"],
        [(r["revision"], r["config"]["champion"], r["reason"]) for r in history],
    )


FLAKY_MODEL = """
import pathlib
import time

import numpy as np

OUTAGE = pathlib.Path({flag!r})


class Model:
    def predict(self, X):
        if OUTAGE.exists():  # a dependency is down: every call hangs
            time.sleep(2.0)
        return np.zeros(len(X), dtype=np.int64)
"""


def _resilience(
    client: Client,
    workdir: Path,
    training_csv: Path,
    healthy: int,
    x_test: pd.DataFrame,
    y_test: pd.Series,
) -> None:
    """A champion that hangs: the failover version answers, then a fallback value does."""
    flag = workdir / "outage"
    model_file = workdir / "flaky.py"
    model_file.write_text(FLAKY_MODEL.format(flag=str(flag)))
    flaky = client.register(
        MODEL, model_file, flavor="python", training_data=training_csv, target="target",
        description="a model whose feature store goes down",
    )["version"]  # fmt: skip
    guarded, bare = f"{MODEL}-guarded", f"{MODEL}-fallback"
    for name, failover in ((guarded, healthy), (bare, None)):
        with contextlib.suppress(ApiError):  # already there when the quickstart runs again
            client.create_deployment(
                name, model=MODEL, version=flaky, timeout_ms=100, failover=failover, fallback=0
            )
    flag.touch()
    console.print(
        f"\n[bold]resilience[/bold]: {MODEL}:{flaky} now hangs on every call; deadline 100 ms. "
        f"{guarded} fails over to {MODEL}:{healthy}; {bare} has only a fallback value (0)"
    )
    rows = x_test.sample(20, random_state=3)
    for name in (guarded, bare):
        title = f"5. {name}: champion hangs"
        answers = _send_traffic(client, rows, y_test.loc[rows.index], title, name)
        table(title, TRAFFIC_COLUMNS, answers)
    flag.unlink()


TOUR_PLAN = """
warmup: {min_requests: 30, timeout_s: 120}
challenge: {steps: [50], metric: error_rate, margin: -0.01, min_samples: 60, step_timeout_s: 120}
bake: {duration_s: 3, max_error_rate: 0.05}
"""
"""A plan sized for the tour's traffic; production plans ask for far more evidence."""

ERRORS_AFTER_FLAG = """
import pathlib

import numpy as np

FLAG = pathlib.Path({flag!r})


class Model:
    n_features = 30

    def predict(self, X):
        X = np.asarray(X, dtype=float)
        if X.any() and ({always!r} or FLAG.exists()):
            raise RuntimeError("feature store unavailable")
        return np.zeros(len(X), dtype=np.int64)
"""


def _rollouts(
    client: Client, workdir: Path, training_csv: Path, registered: list[Any], x_test: pd.DataFrame
) -> None:
    """Three rollouts through gates, moved by the server's controller under live traffic:
    a good version promoted, a broken one stopped at warm-up, and one that breaks after its
    promotion, rolled back by the bake guardrails."""
    console.print(
        "\n[bold]rollouts[/bold]: versions walk into production by themselves through gates "
        "(warm-up in shadow -> 50% challenge with a sequential test -> promote -> bake)"
    )
    rows = x_test.to_numpy().tolist()
    champion = client.show_deployment(DEPLOYMENT)["champion"]
    good = next(r["version"] for r in registered if r["version"] != champion)
    flag = workdir / "breaks-after-promotion"
    broken = client.register(
        MODEL, _source(workdir / "broken.py", ERRORS_AFTER_FLAG, flag, always=True),
        flavor="python", description="fails on every live row",
    )["version"]  # fmt: skip
    fragile = client.register(
        MODEL, _source(workdir / "fragile.py", ERRORS_AFTER_FLAG, flag, always=False),
        flavor="python", description="fails once its feature store goes down",
    )["version"]  # fmt: skip
    results = []
    for version, what in ((good, "a better version"), (broken, "a broken version"),
                          (fragile, "a version that breaks after promotion")):  # fmt: skip
        plan = (
            TOUR_PLAN
            if version != fragile
            else TOUR_PLAN.replace("duration_s: 3", "duration_s: 60")
        )
        status = _run_rollout(client, version, plan, rows, flag if version == fragile else None)
        results.append((f"{MODEL}:{version}", what, status["state"], status["step"],
                        status["reason"] or ""))  # fmt: skip
    table(
        "rollouts",
        ["version", "what it is", "outcome", "last step", "why"],
        results,
    )
    console.print(
        f"{DEPLOYMENT} now serves {MODEL}:{client.show_deployment(DEPLOYMENT)['champion']}; "
        f"'turnout rollout status {DEPLOYMENT}' shows each gate's evidence"
    )


def _source(path: Path, template: str, flag: Path, *, always: bool) -> Path:
    path.write_text(template.format(flag=str(flag), always=always))
    return path


def _run_rollout(
    client: Client, version: int, plan: str, rows: list[list[float]], flag: Path | None
) -> dict[str, Any]:
    """Start a rollout and send traffic until it ends, showing its step as it moves."""
    client.start_rollout(DEPLOYMENT, version=version, plan=plan)
    return _follow_rollout(client, DEPLOYMENT, version, rows, flag)


def _follow_rollout(
    client: Client, deployment: str, version: int, rows: list[list[float]], flag: Path | None
) -> dict[str, Any]:
    """Send traffic until the deployment's rollout ends, showing its step as it moves."""
    progress = Progress(
        TextColumn("[bold]rollout of {task.fields[version]}"),
        TextColumn("{task.fields[step]}"),
        TimeElapsedColumn(),
        transient=True,
    )
    status: dict[str, Any] = {}
    with progress:
        task = progress.add_task("rollout", version=f"{MODEL}:{version}", step="warmup")
        deadline = time.monotonic() + 240
        i = 0
        while time.monotonic() < deadline:
            for _ in range(20):
                with contextlib.suppress(ApiError):
                    client.predict(deployment, [rows[i % len(rows)]])
                i += 1
            status = client.rollout_status(deployment)
            progress.update(task, step=status["step"])
            if flag is not None and status["step"] == "bake":
                flag.touch()  # the feature store goes down after the promotion
            if status["state"] not in ("running", "waiting_approval"):
                break
    if flag is not None:
        flag.unlink(missing_ok=True)
    return status


PIPELINE = """
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def fit(data, params):
    \"\"\"The training pipeline: the same code and params retrain the model on new rows.\"\"\"
    target = data.attrs["target"]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=float(params["C"]), max_iter=2000))
    return model.fit(data.drop(columns=[target]), data[target])
"""

DRIFT_DEPLOYMENT = "breast-cancer-scanner"
RECALIBRATED = ("mean area", "worst area", "area error", "mean perimeter", "worst perimeter")
"""Columns a recalibrated scanner reports in new units (x1.8): the world the model knew moved."""

RETRAIN_POLICY = {
    "data": {"log": "1h"},  # the deployment's own traffic, joined with its actuals
    "triggers": {"drifted_features": 3, "window": "1h", "min_rows": 100},
    "cooldown": "1h",
    "check_every": "1s",
    "min_rows": 100,
}


def _retraining(
    client: Client,
    workdir: Path,
    training_csv: Path,
    x_train: pd.DataFrame,
    y_train: pd.Series,
    data: pd.DataFrame,
    target: pd.Series,
) -> None:
    """A deployment whose inputs drift: the retrain policy notices, a job retrains the model
    with its registered pipeline and params on the logged traffic and its actuals, and the
    new version is rolled out through the usual gates."""
    console.print(
        "\n[bold]retraining[/bold]: a version registered with its training pipeline is "
        "retrained by policy when its traffic drifts"
    )
    pipeline = workdir / "train.py"
    pipeline.write_text(PIPELINE)
    model = _train(x_train, y_train, 1.0)
    path = workdir / "model-pipeline.joblib"
    joblib.dump(model, path)
    record = client.register(
        MODEL, path, flavor="sklearn", params={"C": "1.0"}, training_data=training_csv,
        target="target", pipeline=str(pipeline),
        description="StandardScaler + LogisticRegression(C=1.0), with its training pipeline",
    )  # fmt: skip
    client.apply({
        "deployment": DRIFT_DEPLOYMENT, "model": MODEL, "version": record["version"],
        "rollout": yaml.safe_load(TOUR_PLAN), "retrain": RETRAIN_POLICY,
    })  # fmt: skip
    console.print(
        f"deployed {record['ref']} as [bold]{DRIFT_DEPLOYMENT}[/bold] with a retrain policy: "
        "retrain on the last hour of traffic when 3 or more features drift"
    )
    shifted = data.copy()
    for column in RECALIBRATED:
        shifted[column] = shifted[column] * 1.8
    ids: list[str] = []
    progress = Progress(TextColumn("[bold]traffic from the recalibrated scanner"), BarColumn(),
                        MofNCompleteColumn(), transient=True)  # fmt: skip
    with progress:
        task = progress.add_task("traffic", total=len(shifted))
        for start in range(0, len(shifted), 10):
            part = shifted.iloc[start : start + 10]
            ids += client.predict(DRIFT_DEPLOYMENT, part.to_numpy().tolist())["prediction_ids"]
            progress.advance(task, len(part))
    client.post_actuals(
        DRIFT_DEPLOYMENT,
        [{"prediction_id": i, "actual": int(y)} for i, y in zip(ids, target, strict=True)],
    )
    metrics = client.metrics(DRIFT_DEPLOYMENT, window="1h")
    render_status(metrics)
    job = _wait_for_retrain(client)
    if job is None or job["state"] != "succeeded":
        reason = "no retrain started" if job is None else job["message"]
        console.print(f"[red]the retrain did not succeed:[/red] {reason}", highlight=False)
        return
    result = job["result"]
    console.print(
        f"job {job['id']} ({job['trigger']} trigger) registered [bold]{MODEL}:"
        f"{result['version']}[/bold] from {result['rows']['train']} logged rows "
        f"(data fingerprint {result['data_fingerprint'][:12]}); on the newest "
        f"{result['rows']['holdout']} rows it scores accuracy "
        f"{result['metrics'].get('accuracy', float('nan')):.3f}, its parent "
        f"{result['parent_metrics'].get('accuracy', float('nan')):.3f}",
        highlight=False,
    )
    status = _follow_rollout(
        client, DRIFT_DEPLOYMENT, int(result["version"]), shifted.to_numpy().tolist(), None
    )
    console.print(
        f"rollout of {MODEL}:{result['version']}: {status['state']}"
        + (f" ({status['reason']})" if status["reason"] else ""),
        highlight=False,
    )
    chain = client.lineage(MODEL, int(result["version"]))
    table(
        f"lineage of {MODEL}:{result['version']}",
        ["version", "parent", "job", "trigger", "data fingerprint"],
        [
            (v["ref"], v["parent_version"], v["lineage"].get("job"), v["lineage"].get("trigger"),
             str(v["lineage"].get("data_fingerprint") or (v["training"] or {}).get("fingerprint")
                 or "")[:12])
            for v in chain
        ],
    )  # fmt: skip


def _wait_for_retrain(client: Client) -> dict[str, Any] | None:
    """The retrain job the drift trigger starts, followed until it ends."""
    progress = Progress(
        TextColumn("[bold]retrain"), BarColumn(), TextColumn("{task.description}"),
        TimeElapsedColumn(), transient=True,
    )  # fmt: skip
    with progress:
        task = progress.add_task("waiting for the drift trigger", total=1.0)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            jobs = client.jobs(deployment=DRIFT_DEPLOYMENT, limit=1)
            if jobs:
                job = jobs[0]
                progress.update(task, completed=job["progress"], description=job["message"])
                if job["state"] in ("failed", "cancelled"):
                    return dict(job)
                if job["state"] == "succeeded" and job["result"].get("handoff"):
                    return dict(job)  # the controller has started the rollout
            time.sleep(0.5)
    return None


def _actuals_and_status(client: Client) -> None:
    """The ground truth arrives (here at once; in production hours or days later): every
    answer is graded against it, per version and role, shadows included."""
    report = client.post_actuals(DEPLOYMENT, GRADED)
    console.print(
        f"\n[bold]actuals[/bold]: the true labels of {report['accepted']} predictions arrive "
        f"(POST /api/v1/deployments/{DEPLOYMENT}/actuals, or 'turnout actuals {DEPLOYMENT} "
        "FILE.csv'); production accuracy and drift against the training data:"
    )
    render_status(client.metrics(DEPLOYMENT, window="1h"))


def _shadow_row(client: Client, version: int) -> dict[str, Any] | None:
    """The shadow's counters, once the workers have reported them (about a second)."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        for row in client.show_deployment(DEPLOYMENT)["traffic"]:
            if row["version"] == version and row["role"] == "shadow" and row["compared"]:
                return dict(row)
        time.sleep(0.25)
    return None


def _next_steps(client: Client, temporary: bool, challenger: int) -> None:
    # the temporary server is gone by the time these are typed: point at the --serve one
    url = f"http://127.0.0.1:{DEFAULT_PORT}" if temporary else client.url
    if temporary:
        console.print(
            "\nthe quickstart's temporary server stops now. To keep exploring, run "
            "'turnout quickstart --serve' (state in ~/.turnout, port 8700) and in another shell:",
            soft_wrap=True,
        )
    else:
        console.print("\n[bold]try next[/bold] in another shell:")
    console.print(
        f"  export TURNOUT_URL={url}\n"
        "  turnout models show breast-cancer\n"
        "  turnout deployments show breast-cancer-prod\n"
        "  turnout deployments history breast-cancer-prod\n"
        "  turnout status breast-cancer-prod\n"
        f"  turnout route breast-cancer-prod --challenger {challenger}=20\n"
        f"  turnout promote breast-cancer-prod --version {challenger}\n"
        "  turnout rollback breast-cancer-prod\n"
        "  turnout rollout history breast-cancer-prod\n"
        "  turnout jobs list\n"
        "  turnout retrain-policy show breast-cancer-scanner\n"
        "  turnout retrain breast-cancer-scanner --wait\n"
        f"  curl -s {url}/v2/models/{DEPLOYMENT}\n"
        f"  curl -s -X POST {url}/v1/deployments/{DEPLOYMENT}/predict "
        '-d \'{"instances": [[17.99,10.38,122.8,1001,0.1184,0.2776,0.3001,0.1471,0.2419,'
        "0.07871,1.095,0.9053,8.589,153.4,0.006399,0.04904,0.05373,0.01587,0.03003,0.006193,"
        "25.38,17.33,184.6,2019,0.1622,0.6656,0.7119,0.2654,0.4601,0.1189]]}'",
        soft_wrap=True,
        highlight=False,
    )


def wait_for_ctrl_c(server: Server) -> None:
    console.print(f"\nserver running at {server.url} (home {server.home}); press Ctrl-C to stop it")
    try:
        while server.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping")
