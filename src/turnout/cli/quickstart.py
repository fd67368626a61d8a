"""`turnout quickstart`: the whole lifecycle, end to end, on data bundled with scikit-learn."""

from __future__ import annotations

import typer


def quickstart(
    serve: bool = typer.Option(False, "--serve", help="Leave the server running afterwards."),
    requests: int = typer.Option(200, help="How many prediction requests to send."),
) -> None:
    """Run the whole lifecycle end to end on bundled data."""
    # the tour loads scikit-learn and pandas: imported only when it runs, so that every
    # other command starts quickly
    from turnout.examples import quickstart as example

    example.run(serve=serve, n_requests=requests)
