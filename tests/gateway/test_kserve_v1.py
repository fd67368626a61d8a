"""KServe v1 against a real `turnout serve`: `GET /v1/models/NAME` and
`POST /v1/models/NAME:predict`, routed, authorised, logged and mirrored like every other path."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from sklearn.pipeline import Pipeline

from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline, training_csv
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.server

PREDICT = "/v1/models/bc-prod:predict"


@pytest.fixture(scope="module")
def model() -> Pipeline:
    return sklearn_pipeline()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model: Pipeline) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("kserve-v1")
    live = LiveServer(folder / "home", env={"TURNOUT_PREDICT_AUTH": "required"}).start()
    try:
        with live.client() as client:
            csv = training_csv(folder)
            client.register("bc", save_joblib(model, folder), flavor="sklearn",
                            training_data=csv, target="target")  # fmt: skip
            shadow = save_joblib(sklearn_pipeline(c=0.01), folder, "shadow.joblib")
            client.register("bc", shadow, flavor="sklearn", training_data=csv, target="target")
            client.create_deployment("bc-prod", model="bc", version=1)
            client.route("bc-prod", shadows={2: 100})
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def http(server: LiveServer) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, timeout=60, headers=headers) as client:
        yield client


def test_model_status(http: httpx.Client) -> None:
    response = http.get("/v1/models/bc-prod")
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "bc-prod", "ready": True}


def test_instances_and_inputs_match_sklearn(http: httpx.Client, model: Pipeline) -> None:
    sample = breast_cancer()[0].iloc[:6]
    expected = model.predict(sample).tolist()
    for body in (
        {"instances": sample.to_numpy().tolist()},
        {"inputs": sample.to_numpy().tolist()},
        {"instances": sample.to_dict(orient="records")},
    ):
        response = http.post(PREDICT, json=body)
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": expected}
        assert response.headers["x-turnout-model-version"] == "1"
        assert response.headers["x-turnout-role"] == "champion"
        assert response.headers["x-turnout-revision"] == "2"
        assert response.headers["x-turnout-prediction-id"]


def test_auth_is_checked_before_the_body(server: LiveServer) -> None:
    anonymous = httpx.post(f"{server.url}{PREDICT}", json={"instances": [[1.0] * 30]})
    assert anonymous.status_code == 401, anonymous.text
    assert "error" in anonymous.json()
    assert httpx.get(f"{server.url}/v1/models/bc-prod").status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "mentions"),
    [
        ("POST", PREDICT, {"instances": [[1.0] * 29]}, 400, "30 features"),
        ("POST", PREDICT, {"rows": [[1.0] * 30]}, 400, "'instances'"),
        ("POST", PREDICT, {"instances": []}, 400, "'instances'"),
        ("POST", "/v1/models/nope:predict", {"instances": [[1.0] * 30]}, 404, "not found"),
        ("GET", "/v1/models/nope", None, 404, "not found"),
        ("GET", PREDICT, None, 405, "use POST"),
        ("POST", "/v1/models/bc-prod", {}, 405, "use GET"),
        ("POST", "/v1/models/bc-prod:explain", {}, 404, "no route"),
    ],
)
def test_bad_requests(
    http: httpx.Client, method: str, path: str, body: object, status: int, mentions: str
) -> None:
    response = http.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert mentions in response.json()["error"]


def test_logged_and_mirrored_to_the_shadow(server: LiveServer, http: httpx.Client) -> None:
    sample = breast_cancer()[0].iloc[100:110].to_numpy().tolist()
    for _ in range(3):
        assert http.post(PREDICT, json={"instances": sample}).status_code == 200
    deadline = time.monotonic() + 60
    with server.client() as client:
        while True:
            groups = {(g["version"], g["role"]): g for g in client.metrics("bc-prod")["groups"]}
            logged = [groups.get(key, {}).get("requests", 0) for key in ((1, "champion"),
                                                                        (2, "shadow"))]  # fmt: skip
            if min(logged) >= 30 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert min(logged) >= 30, groups
