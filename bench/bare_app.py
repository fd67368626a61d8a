"""The floor of Python serving: a raw ASGI app that decodes one OIP v2 request with orjson and
calls `predict` inline on a numpy row. No framework, no routing table, no validation beyond
what a crash would give. Served by uvicorn + httptools; the model path comes from
BENCH_MODEL (a joblib file).

    BENCH_MODEL=model.joblib uvicorn bench.bare_app:app --http httptools --loop uvloop
"""

from __future__ import annotations

import os
from typing import Any

import joblib
import numpy as np
import orjson

MODEL = joblib.load(os.environ["BENCH_MODEL"])
JSON_HEADERS = [(b"content-type", b"application/json")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] == "GET":  # readiness probe
        await _reply(send, 200, b'{"ready":true}')
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    tensor = orjson.loads(body)["inputs"][0]
    rows = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
    labels = MODEL.predict(rows)
    out = {
        "model_name": "bc",
        "outputs": [
            {"name": "predict", "shape": [len(labels)], "datatype": "INT64", "data": labels},
        ],
    }
    await _reply(send, 200, orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY))


async def _reply(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})
