"""Which token the SDK and CLI send: the local admin token only to the local server."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnout.client import Client, discover_token
from turnout.settings import Settings

ADMIN = "tnt_local-admin"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("TURNOUT_TOKEN", raising=False)
    monkeypatch.delenv("TURNOUT_PORT", raising=False)
    monkeypatch.setenv("TURNOUT_HOME", str(tmp_path))
    (tmp_path / "admin.token").write_text(ADMIN + "\n")
    return tmp_path


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8700",
        "http://localhost:8700/",
        "http://127.0.0.2:8700",
        "http://[::1]:8700",
    ],
)
def test_the_admin_token_goes_to_the_local_server(home: Path, url: str) -> None:
    assert discover_token(Settings(home=home), url) == ADMIN


@pytest.mark.parametrize(
    "url",
    [
        "http://attacker.example:8700",
        "https://turnout.example.com",
        "http://10.0.0.7:8700",
        "http://127.0.0.1:9999",  # something else listening on this machine
        "http://localhost",
        "http://127.0.0.1.attacker.example:8700",
        "not a url",
    ],
)
def test_the_admin_token_never_goes_elsewhere(home: Path, url: str) -> None:
    assert discover_token(Settings(home=home), url) is None
    with Client(url) as client:
        assert client.token is None
        assert "authorization" not in client._http.headers


def test_the_port_a_served_home_recorded_is_local(home: Path) -> None:
    (home / "server.port").write_text("9123\n")
    assert discover_token(Settings(home=home), "http://127.0.0.1:9123") == ADMIN
    assert discover_token(Settings(home=home, port=9200), "http://127.0.0.1:9200") == ADMIN
    assert discover_token(Settings(home=home), "http://127.0.0.1:9124") is None


def test_an_explicit_token_is_always_sent(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNOUT_TOKEN", "tnt_chosen")
    assert discover_token(Settings(home=home), "https://turnout.example.com") == "tnt_chosen"
