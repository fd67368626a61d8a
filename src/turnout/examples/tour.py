"""The quickstart's tour: train, register, deploy and serve on data bundled with
scikit-learn, then walk every lifecycle step against a running server."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score

from turnout.cli.monitoring import render_status
from turnout.cli.output import console, table
from turnout.client import ApiError, Client
from turnout.examples import resilience, retraining, rollouts
from turnout.examples.context import DEPLOYMENT, MODEL, Data, Tour, train
from turnout.examples.traffic import TRAFFIC_COLUMNS, send_traffic
from turnout.settings import DEFAULT_PORT

SHADOW_REPORT_TIMEOUT_S = 3
"""How long the workers may take to report a shadow's counters."""


def run_tour(client: Client, n_requests: int, *, temporary: bool) -> None:
    """Every step of the tour, in order; `temporary` says the server stops afterwards."""
    data = Data.load()
    workdir = Path(tempfile.mkdtemp(prefix="turnout-models-"))
    try:
        training = data.x_train.copy()
        training["target"] = data.y_train
        training_csv = workdir / "train.csv"
        training.to_csv(training_csv, index=False)
        tour = Tour(client, data, workdir, training_csv)
        registered = _register(tour)
        _lifecycle(tour, registered, n_requests)
        _actuals_and_status(tour)
        rollouts.run(tour, registered)
        resilience.run(tour, healthy=registered[1])
        retraining.run(tour)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _next_steps(client, temporary=temporary, challenger=registered[1])


def _register(tour: Tour) -> list[int]:
    """Two versions of different regularization, with their holdout scores; their numbers."""
    data = tour.data
    registered = []
    for c in (0.001, 1.0):
        model = train(data.x_train, data.y_train, c)
        path = tour.workdir / f"model-c{c}.joblib"
        joblib.dump(model, path)
        metrics = {
            "accuracy": float(accuracy_score(data.y_test, model.predict(data.x_test))),
            "roc_auc": float(roc_auc_score(data.y_test, model.predict_proba(data.x_test)[:, 1])),
        }
        record = tour.client.register(
            MODEL, path, flavor="sklearn", metrics=metrics, params={"C": str(c)},
            training_data=tour.training_csv, target="target",
            description=f"StandardScaler + LogisticRegression(C={c})",
        )  # fmt: skip
        registered.append(int(record["version"]))
        console.print(
            f"registered [bold]{record['ref']}[/bold]: holdout accuracy "
            f"{metrics['accuracy']:.3f}, ROC AUC {metrics['roc_auc']:.3f}"
        )
    return registered


def _lifecycle(tour: Tour, registered: list[int], n_requests: int) -> None:
    """Champion alone, shadow warm-up, champion/challenger, blue-green promote, rollback."""
    client = tour.client
    champion, challenger = registered
    try:
        client.create_deployment(DEPLOYMENT, model=MODEL, version=champion, timeout_ms=1000)
        console.print(f"deployed {MODEL}:{champion} as [bold]{DEPLOYMENT}[/bold]")
    except ApiError as exc:
        if exc.status != 409:
            raise
        console.print(f"deployment {DEPLOYMENT} already exists; sending traffic to it")
    per_phase = max(n_requests // 4, 10)
    x_test, y_test = tour.data.x_test, tour.data.y_test
    rows = x_test.sample(per_phase * 4, replace=per_phase * 4 > len(x_test), random_state=1)
    phases = iter(np.array_split(np.arange(len(rows)), 4))

    def phase(title: str) -> None:
        part = rows.iloc[next(phases)]
        truth = y_test.loc[part.index]
        answers = send_traffic(client, DEPLOYMENT, part, truth, label=title, graded=tour.graded)
        table(title, TRAFFIC_COLUMNS, answers)

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


def _shadow_row(client: Client, version: int) -> dict[str, Any] | None:
    """The shadow's counters, once the workers have reported them (about a second)."""
    deadline = time.monotonic() + SHADOW_REPORT_TIMEOUT_S
    while time.monotonic() < deadline:
        for row in client.show_deployment(DEPLOYMENT)["traffic"]:
            if row["version"] == version and row["role"] == "shadow" and row["compared"]:
                return dict(row)
        time.sleep(0.25)
    return None


def _actuals_and_status(tour: Tour) -> None:
    """The ground truth arrives (here at once; in production hours or days later): every
    answer is graded against it, per version and role, shadows included."""
    report = tour.client.post_actuals(DEPLOYMENT, [asdict(actual) for actual in tour.graded])
    console.print(
        f"\n[bold]actuals[/bold]: the true labels of {report['accepted']} predictions arrive "
        f"(POST /api/v1/deployments/{DEPLOYMENT}/actuals, or 'turnout actuals {DEPLOYMENT} "
        "FILE.csv'); production accuracy and drift against the training data:"
    )
    render_status(tour.client.metrics(DEPLOYMENT, window="1h"))


def _next_steps(client: Client, *, temporary: bool, challenger: int) -> None:
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
        f"  turnout models show {MODEL}\n"
        f"  turnout deployments show {DEPLOYMENT}\n"
        f"  turnout deployments history {DEPLOYMENT}\n"
        f"  turnout status {DEPLOYMENT}\n"
        f"  turnout route {DEPLOYMENT} --challenger {challenger}=20\n"
        f"  turnout promote {DEPLOYMENT} --version {challenger}\n"
        f"  turnout rollback {DEPLOYMENT}\n"
        f"  turnout rollout history {DEPLOYMENT}\n"
        "  turnout jobs list\n"
        "  turnout retrain-policy show breast-cancer-scanner\n"
        "  turnout retrain breast-cancer-scanner --wait\n"
        f"  curl -s {url}/v2/models/{DEPLOYMENT}\n"
        f"  curl -s -X POST {url}/v1/deployments/{DEPLOYMENT}/predict "
        '-d \'{"instances": [[17.99,10.38,122.8,1001,0.1184,0.2776,0.3001,0.1471,0.2419,'
        "0.07871,1.095,0.9053,8.589,153.4,0.006399,0.04904,0.05373,0.01587,0.03003,0.006193,"
        "25.38,17.33,184.6,2019,0.1622,0.6656,0.7119,0.2654,0.4601,0.1189]]}'\n"
        f"  the web console: {url}/ui (sign in with the admin token, by default in "
        "~/.turnout/admin.token)",
        soft_wrap=True,
        highlight=False,
    )
