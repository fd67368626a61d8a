"""A champion that hangs: the failover version answers within the deadline, and where
there is none, the fallback value does."""

from __future__ import annotations

import contextlib

from turnout.cli.output import console, table
from turnout.client import ApiError
from turnout.examples.context import MODEL, Tour
from turnout.examples.traffic import TRAFFIC_COLUMNS, send_traffic

DEADLINE_MS = 100
ROWS = 20


def run(tour: Tour, *, healthy: int) -> None:
    """Register a model that hangs while an outage flag exists, serve it behind a failover
    (`healthy`) and behind a bare fallback value, and send traffic to both during an outage."""
    client = tour.client
    flag = tour.workdir / "outage"
    flaky = client.register(
        MODEL, tour.model_folder("flaky", "flaky", {"flag": str(flag)}), flavor="python",
        training_data=tour.training_csv, target="target",
        description="a model whose feature store goes down",
    )["version"]  # fmt: skip
    guarded, bare = f"{MODEL}-guarded", f"{MODEL}-fallback"
    for name, failover in ((guarded, healthy), (bare, None)):
        with contextlib.suppress(ApiError):  # already there when the quickstart runs again
            client.create_deployment(
                name, model=MODEL, version=flaky, timeout_ms=DEADLINE_MS, failover=failover,
                fallback=0,
            )  # fmt: skip
    flag.touch()
    console.print(
        f"\n[bold]resilience[/bold]: {MODEL}:{flaky} now hangs on every call; deadline "
        f"{DEADLINE_MS} ms. {guarded} fails over to {MODEL}:{healthy}; {bare} has only a "
        "fallback value (0)"
    )
    rows = tour.data.x_test.sample(ROWS, random_state=3)
    truth = tour.data.y_test.loc[rows.index]
    for name in (guarded, bare):
        title = f"5. {name}: champion hangs"
        table(title, TRAFFIC_COLUMNS, send_traffic(client, name, rows, truth, label=title))
    flag.unlink()
