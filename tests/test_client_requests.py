"""`Client` and `AsyncClient` send the same bytes for the same verb and read the same
answers, recorded through httpx's MockTransport (no server)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from turnout import AsyncClient, Client, InferResult
from turnout.calls import PAGE, ApiError

URL = "http://turnout.test"
SHOWN_HEADERS = ("authorization", "content-type", "inference-header-content-length")


def answer(request: httpx.Request) -> httpx.Response:
    """What a server would say, enough to exercise every reader."""
    path = request.url.path
    if path.endswith("/infer") and request.headers.get("inference-header-content-length"):
        values = np.array([0.25, 0.75])
        header = json.dumps({
            "model_name": "d", "model_version": "2", "id": "r",
            "outputs": [{"name": "predict", "datatype": "FP64", "shape": [2],
                         "parameters": {"binary_data_size": values.nbytes}}],
        }).encode()  # fmt: skip
        headers = {"inference-header-content-length": str(len(header)), "x-turnout-role": "direct",
                   "x-turnout-revision": "4", "x-turnout-prediction-id": "r"}  # fmt: skip
        return httpx.Response(200, content=header + values.tobytes(), headers=headers)
    if path.endswith("/infer"):
        outputs = [{"name": "predict", "datatype": "INT64", "shape": [1], "data": [1]}]
        return httpx.Response(
            200, json={"model_name": "d", "model_version": "1", "outputs": outputs}
        )
    if path == "/api/v1/deployments" and request.method == "GET":
        offset = int(request.url.params["offset"])
        return httpx.Response(
            200, json=[{"name": f"d{i}"} for i in range(PAGE if offset == 0 else 3)]
        )
    if path == "/api/v1/deployments/gone":
        return httpx.Response(404, json={"error": "deployment 'gone' not found"})
    if request.method == "DELETE":
        return httpx.Response(204)
    return httpx.Response(200, json={"path": path})


def recorded(request: httpx.Request) -> tuple[str, str, dict[str, str], bytes]:
    """A request with multipart boundaries made comparable."""
    headers = {k: request.headers[k] for k in SHOWN_HEADERS if k in request.headers}
    body = request.read()
    boundary = headers.get("content-type", "").partition("boundary=")[2]
    if boundary:
        headers["content-type"] = headers["content-type"].replace(boundary, "B")
        body = body.replace(boundary.encode(), b"B")
    return request.method, str(request.url), headers, body


def plain(result: Any) -> Any:
    if isinstance(result, InferResult):
        arrays = {name: (a.dtype.str, a.tolist()) for name, a in result.outputs.items()}
        return {**vars(result), "outputs": arrays}
    return result


def verbs(tmp_path: Path) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    model = tmp_path / "model.joblib"
    model.write_bytes(b"not really a model")
    tensor = {"name": "input-0", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}
    return [
        ("predict", ("d", [[1.0, 2.0]]), {}),
        ("infer", ("d", np.arange(6.0).reshape(2, 3)), {"version": 2, "request_id": "r"}),
        ("infer", ("d", {"words": np.array(["a", "b"]), "n": np.int32([1, 2])}),
         {"binary": False, "outputs": ["predict"]}),
        ("infer_request", ("d", {"inputs": [tensor]}), {}),
        ("register", ("m", model), {"flavor": "sklearn", "tags": {"team": "risk"},
                                    "metrics": {"accuracy": 0.9}, "description": "first"}),
        ("create_deployment", ("d",), {"model": "m", "version": 1, "fallback": None,
                                       "timeout_ms": 50}),
        ("create_deployment", ("d",), {"model": "m", "keep_loaded": True}),
        ("list_deployments", (), {"prefix": "d"}),
        ("list_deployments", (), {"limit": 5, "offset": 10}),
        ("show_deployment", ("d",), {}),
        ("route", ("d",), {"challengers": {2: 10.0}, "shadows": {3: 100.0}, "sticky_key": "k"}),
        ("route", ("d",), {"clear": True}),
        ("promote", ("d",), {"version": 2}),
        ("rollback", ("d",), {}),
        ("rollback", ("d",), {"to_revision": 1}),
        ("status", ("d",), {"window": "1h"}),
        ("apply", ("name: d\nmodel: m\n",), {}),
        ("apply", ({"name": "d", "model": "m"},), {}),
        ("post_actuals", ("d", [{"prediction_id": "p", "actual": 1}]), {}),
        ("start_rollout", ("d",), {"version": 2, "plan": "steps: []"}),
        ("abort_rollout", ("d",), {"reason": "enough"}),
        ("delete_deployment", ("d",), {}),
        ("health", (), {}),
        ("ready", (), {}),
    ]  # fmt: skip


def run_sync(verb: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, list[Any]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    with Client(URL, "tnt_t", transport=httpx.MockTransport(handle)) as client:
        result = getattr(client, verb)(*args, **kwargs)
    return plain(result), [recorded(r) for r in seen]


def run_async(verb: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, list[Any]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    async def call() -> Any:
        async with AsyncClient(URL, "tnt_t", transport=httpx.MockTransport(handle)) as client:
            return await getattr(client, verb)(*args, **kwargs)

    return plain(asyncio.run(call())), [recorded(r) for r in seen]


def test_both_clients_send_the_same_requests_and_read_the_same_answers(tmp_path: Path) -> None:
    for verb, args, kwargs in verbs(tmp_path):
        sync_result, sync_requests = run_sync(verb, args, kwargs)
        async_result, async_requests = run_async(verb, args, kwargs)

        assert sync_requests, verb
        assert async_requests == sync_requests, verb
        assert async_result == sync_result, verb


def test_what_the_requests_say(tmp_path: Path) -> None:
    _, [fallback] = run_sync("create_deployment", ("d",), {"model": "m", "fallback": None})
    _, [no_fallback] = run_sync("create_deployment", ("d",), {"model": "m"})
    _, pages = run_sync("list_deployments", (), {})
    result, [binary] = run_sync("infer", ("d", np.zeros((2, 3))), {"version": 2})

    assert json.loads(fallback[3]) == {"name": "d", "model": "m", "version": None, "fallback": None}
    assert json.loads(no_fallback[3]) == {"name": "d", "model": "m", "version": None}
    assert [p[1] for p in pages] == [
        f"{URL}/api/v1/deployments?offset=0&prefix=&limit={PAGE}",
        f"{URL}/api/v1/deployments?offset={PAGE}&prefix=&limit={PAGE}",
    ]
    assert binary[1] == f"{URL}/v2/models/d/versions/2/infer"
    assert binary[2]["content-type"] == "application/octet-stream"
    assert binary[2]["authorization"] == "Bearer tnt_t"
    size = int(binary[2]["inference-header-content-length"])
    assert json.loads(binary[3][:size])["parameters"] == {"binary_data_output": True}
    assert binary[3][size:] == np.zeros((2, 3)).tobytes()
    assert result["outputs"] == {"predict": ("<f8", [0.25, 0.75])}
    assert (result["role"], result["revision"], result["prediction_id"]) == ("direct", 4, "r")


def test_errors_read_the_same(tmp_path: Path) -> None:
    for run in (run_sync, run_async):
        with pytest.raises(ApiError, match="deployment 'gone' not found") as raised:
            run("show_deployment", ("gone",), {})
        assert raised.value.status == 404
