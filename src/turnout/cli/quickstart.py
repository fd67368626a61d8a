"""`turnout quickstart`: the whole lifecycle, end to end, on data bundled with scikit-learn."""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Any

import typer

from turnout.cli.output import console
from turnout.client import Client
from turnout.settings import DEFAULT_PORT, Settings


def quickstart(
    serve: bool = typer.Option(False, "--serve", help="Leave the server running afterwards."),
    requests: int = typer.Option(200, help="How many prediction requests to send."),
) -> None:
    """Run the whole lifecycle end to end on bundled data."""
    # scikit-learn and pandas load only when the quickstart runs, so every other command
    # starts quickly.
    tour: Any = importlib.import_module("turnout.cli.tour")
    client = tour.existing_server()
    server = None
    if client is None:
        if serve:
            home = Settings().home
            port = DEFAULT_PORT if tour.port_free(DEFAULT_PORT) else tour.free_port()
            server = tour.start_server(home, port, temporary=False)
        else:
            home = Path(tempfile.mkdtemp(prefix="turnout-quickstart-"))
            server = tour.start_server(home, tour.free_port(), temporary=True)
        console.print(f"started a server at {server.url} (home {server.home})")
        client = Client(server.url, (server.home / "admin.token").read_text().strip())
    try:
        tour.tour(client, requests, temporary=server is not None and server.temporary)
        if serve and server is not None:
            tour.wait_for_ctrl_c(server)
    finally:
        client.close()
        if server is not None:
            server.stop()
