"""`Client.infer` against a live server: numpy arrays in and out, as JSON and as binary
tensors, with the x-turnout-* metadata of the answer."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline
from tests.fixtures.server import LiveServer
from turnout.client import ApiError, Client, InferResult

pytestmark = pytest.mark.server

DEPLOYMENT = "cancer"


@pytest.fixture(scope="module")
def model() -> Pipeline:
    return sklearn_pipeline()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model: Pipeline) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("infer")
    live = LiveServer(home / "home").start()
    with live.client() as client:
        client.register(DEPLOYMENT, save_joblib(model, home), flavor="sklearn")
        client.create_deployment(DEPLOYMENT, model=DEPLOYMENT)
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[Client]:
    with server.client() as sdk:
        yield sdk


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return breast_cancer()[0][:25]


@pytest.fixture(scope="module")
def rows(frame: pd.DataFrame) -> np.ndarray:
    return frame.to_numpy()


def check(result: InferResult, model: Pipeline, frame: pd.DataFrame) -> None:
    np.testing.assert_array_equal(result.outputs["predict"], model.predict(frame))
    np.testing.assert_allclose(result.outputs["predict_proba"], model.predict_proba(frame))
    assert result.model_name == DEPLOYMENT
    assert result.model_version == "1"
    assert result.role == "champion"
    assert isinstance(result.revision, int)
    assert result.prediction_id


def test_json_tensors_in_and_out(client: Client, model: Pipeline, frame: pd.DataFrame) -> None:
    rows = frame.to_numpy()
    result = client.infer(DEPLOYMENT, {"input-0": rows}, binary=False, request_id="req-1")

    check(result, model, frame)
    assert result.id == "req-1"
    assert result.prediction_id == "req-1"


def test_one_array_is_the_single_input(
    client: Client, model: Pipeline, frame: pd.DataFrame
) -> None:
    check(client.infer(DEPLOYMENT, frame.to_numpy(), binary=False), model, frame)


def test_outputs_and_version_are_chosen(
    client: Client, model: Pipeline, frame: pd.DataFrame
) -> None:
    rows = frame.to_numpy()
    result = client.infer(DEPLOYMENT, rows, binary=False, outputs=["predict"], version=1)

    assert list(result.outputs) == ["predict"]
    np.testing.assert_array_equal(result.outputs["predict"], model.predict(frame))
    assert result.role == "direct"


def test_a_whole_oip_request_still_gets_its_json(client: Client, rows: np.ndarray) -> None:
    tensor = {"name": "input-0", "shape": [2, 30], "datatype": "FP64",
              "data": rows[:2].ravel().tolist()}  # fmt: skip
    answer = client.infer(DEPLOYMENT, {"inputs": [tensor]})

    assert answer["model_name"] == DEPLOYMENT
    assert [o["name"] for o in answer["outputs"]] == ["predict", "predict_proba"]


def test_errors_are_api_errors(client: Client, rows: np.ndarray) -> None:
    with pytest.raises(ApiError, match="'nowhere' not found"):
        client.infer("nowhere", rows, binary=False)
    with pytest.raises(ApiError, match="30") as raised:
        client.infer(DEPLOYMENT, rows[:, :5], binary=False)
    assert raised.value.status == 400


@pytest.mark.parametrize("outputs", [None, ["predict_proba"]])
def test_binary_tensors_in_and_out(
    client: Client, model: Pipeline, frame: pd.DataFrame, outputs: list[str] | None
) -> None:
    single = frame.astype(np.float32)
    result = client.infer(DEPLOYMENT, {"input-0": single.to_numpy()}, outputs=outputs)

    expected = model.predict_proba(single)
    np.testing.assert_allclose(result.outputs["predict_proba"], expected, rtol=1e-6)
    assert list(result.outputs) == (outputs or ["predict", "predict_proba"])
    assert result.role == "champion"
    assert result.model_version == "1"


def test_binary_and_json_agree(client: Client, rows: np.ndarray) -> None:
    binary = client.infer(DEPLOYMENT, rows, binary=True)
    plain = client.infer(DEPLOYMENT, rows, binary=False)

    for name in ("predict", "predict_proba"):
        np.testing.assert_array_equal(binary.outputs[name], plain.outputs[name])
        assert binary.outputs[name].dtype == plain.outputs[name].dtype


def test_a_token_scoped_to_the_deployment_infers(server: LiveServer) -> None:
    with server.client() as admin:
        token = admin.create_token("caller", "viewer", deployments=[DEPLOYMENT])["token"]
    with Client(server.url, token) as caller:
        result = caller.infer(DEPLOYMENT, np.zeros((1, 30)))
    assert result.outputs["predict"].shape == (1,)
