"""`turnout quickstart`: the tour against the running server at TURNOUT_URL, or against
one it starts for the occasion."""

from __future__ import annotations

import tempfile
from pathlib import Path

from turnout.cli.output import console
from turnout.examples.local_server import (
    LocalServer,
    existing_server,
    free_port,
    port_free,
    start_server,
    wait_for_ctrl_c,
)
from turnout.examples.tour import run_tour
from turnout.settings import DEFAULT_PORT, Settings


def run(*, serve: bool, n_requests: int) -> None:
    """The tour; with `serve`, a server it starts keeps running (in ~/.turnout) until Ctrl-C."""
    client = existing_server()
    server: LocalServer | None = None
    if client is None:
        server = _start(serve=serve)
        console.print(f"started a server at {server.url} (home {server.home})")
        client = server.client()
    try:
        run_tour(client, n_requests, temporary=server is not None and server.temporary)
        if serve and server is not None:
            wait_for_ctrl_c(server)
    finally:
        client.close()
        if server is not None:
            server.stop()


def _start(*, serve: bool) -> LocalServer:
    if serve:
        port = DEFAULT_PORT if port_free(DEFAULT_PORT) else free_port()
        return start_server(Settings().home, port, temporary=False)
    home = Path(tempfile.mkdtemp(prefix="turnout-quickstart-"))
    return start_server(home, free_port(), temporary=True)
