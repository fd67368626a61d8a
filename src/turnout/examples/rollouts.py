"""Three rollouts through gates, moved by the server's controller under live traffic: a good
version promoted, a broken one stopped at warm-up, and one that breaks after its promotion,
rolled back by the bake guardrails."""

from __future__ import annotations

from typing import Any

from turnout.cli.output import console, table
from turnout.examples.context import DEPLOYMENT, MODEL, Tour
from turnout.examples.traffic import follow_rollout

TOUR_PLAN: dict[str, Any] = {
    "warmup": {"min_requests": 30, "timeout_s": 120},
    "challenge": {
        "steps": [50],
        "metric": "error_rate",
        "margin": -0.01,
        "min_samples": 60,
        "step_timeout_s": 120,
    },
    "bake": {"duration_s": 3, "max_error_rate": 0.05},
}
"""A plan sized for the tour's traffic; production plans ask for far more evidence."""

LONG_BAKE_S = 60
"""The bake of the version that breaks after promotion: long enough to see it break."""


def run(tour: Tour, registered: list[int]) -> None:
    client = tour.client
    console.print(
        "\n[bold]rollouts[/bold]: versions walk into production by themselves through gates "
        "(warm-up in shadow -> 50% challenge with a sequential test -> promote -> bake)"
    )
    rows = tour.data.x_test.to_numpy().tolist()
    champion = client.show_deployment(DEPLOYMENT)["champion"]
    good = next(version for version in registered if version != champion)
    flag = tour.workdir / "breaks-after-promotion"
    broken = client.register(
        MODEL, tour.model_folder("broken", "failing", {"flag": str(flag), "always": True}),
        flavor="python", description="fails on every live row",
    )["version"]  # fmt: skip
    fragile = client.register(
        MODEL, tour.model_folder("fragile", "failing", {"flag": str(flag), "always": False}),
        flavor="python", description="fails once its feature store goes down",
    )["version"]  # fmt: skip
    results = []
    for version, what in ((good, "a better version"), (broken, "a broken version"),
                          (fragile, "a version that breaks after promotion")):  # fmt: skip
        plan = TOUR_PLAN
        if version == fragile:
            plan = {**TOUR_PLAN, "bake": {**TOUR_PLAN["bake"], "duration_s": LONG_BAKE_S}}
        client.start_rollout(DEPLOYMENT, version=version, plan=plan)
        status = follow_rollout(
            client, DEPLOYMENT, label=f"{MODEL}:{version}", rows=rows,
            breaks_in_bake=flag if version == fragile else None,
        )  # fmt: skip
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
