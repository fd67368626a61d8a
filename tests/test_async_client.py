"""`turnout.AsyncClient` against a live server: registration, the deployment lifecycle and
many predictions in flight at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline
from tests.fixtures.server import LiveServer, free_port
from turnout import ApiError, AsyncClient
from turnout.calls import ServerUnreachable

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("async") / "home").start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return breast_cancer()[0][:40]


def test_the_lifecycle_and_concurrent_predictions(
    server: LiveServer, tmp_path: Path, frame: pd.DataFrame
) -> None:
    first, second = sklearn_pipeline(1.0), sklearn_pipeline(0.01)
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()

    async def lifecycle() -> dict[str, Any]:
        async with AsyncClient(server.url, server.token) as client:
            await client.register("churn", save_joblib(first, tmp_path / "1"), flavor="sklearn")
            await client.register(
                "churn", save_joblib(second, tmp_path / "2"), flavor="sklearn", tags={"c": "0.01"}
            )
            created = await client.create_deployment("churn-prod", model="churn", version=1)
            answers = await asyncio.gather(
                *(client.predict("churn-prod", [row]) for row in frame.to_dict("records")),
                *(client.infer("churn-prod", frame[i : i + 1].to_numpy()) for i in range(20)),
            )
            routed = await client.route("churn-prod", shadows={2: 1.0})
            promoted = await client.promote("churn-prod", version=2)
            after = await client.infer("churn-prod", frame.to_numpy(), binary=False)
            rolled = await client.rollback("churn-prod")
            return {
                "created": created,
                "answers": answers,
                "routed": routed,
                "promoted": promoted,
                "after": after,
                "rolled": rolled,
                "shown": await client.show_deployment("churn-prod"),
                "status": await client.status("churn-prod", window="1h"),
                "listed": await client.list_deployments(),
                "version": await client.show_version("churn", 2),
            }

    seen = asyncio.run(lifecycle())

    answers = seen["answers"]
    by_json = [a["predictions"][0] for a in answers[: len(frame)]]
    by_oip = [a.outputs["predict"][0] for a in answers[len(frame) :]]
    np.testing.assert_array_equal(by_json, first.predict(frame))
    np.testing.assert_array_equal(by_oip, first.predict(frame[:20]))
    assert {a.role for a in answers[len(frame) :]} == {"champion"}
    assert len({a["prediction_ids"][0] for a in answers[: len(frame)]}) == len(frame)
    after = seen["after"]
    np.testing.assert_array_equal(after.outputs["predict"], second.predict(frame))
    assert after.model_version == "2"
    assert [d["name"] for d in seen["listed"]] == ["churn-prod"]
    assert seen["version"]["tags"] == {"c": "0.01"}
    revisions = [seen[k]["revision"] for k in ("created", "routed", "promoted", "rolled")]
    assert revisions == sorted(set(revisions))
    assert seen["shown"]["revision"] == revisions[-1]
    assert isinstance(seen["status"], dict)


def test_errors_are_the_same_as_the_sync_client(server: LiveServer) -> None:
    async def calls() -> tuple[BaseException | object, ...]:
        async with AsyncClient(server.url, server.token) as client:
            return tuple(
                await asyncio.gather(
                    client.predict("nowhere", [[1.0]]),
                    client.promote("nowhere", version=1),
                    client.infer("nowhere", np.zeros((1, 3))),
                    return_exceptions=True,
                )
            )

    for error in asyncio.run(calls()):
        assert isinstance(error, ApiError)
        assert error.status == 404
        assert "nowhere" in error.message


def test_an_unreachable_server_is_named_and_not_ready() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async def calls() -> bool:
        async with AsyncClient(url, "-") as client:
            with pytest.raises(ServerUnreachable, match=f"cannot reach turnout at {url}"):
                await client.health()
            return await client.ready()

    assert asyncio.run(calls()) is False
