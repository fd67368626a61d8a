"""What the model host hides from runners that have to stay root."""

from __future__ import annotations

from pathlib import Path

from turnout.host.config import _state_folders
from turnout.settings import Settings


def test_every_state_folder_is_hidden_once_and_nested_ones_with_their_parent(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    shared_log = tmp_path / "nfs" / "log"
    hidden = _state_folders(Settings(home=home, log_dir=str(shared_log), artifact_root=None))
    assert hidden == (home.resolve(), shared_log.resolve())  # <home>/artifacts goes with home


def test_an_object_store_is_not_a_folder_to_hide(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", artifact_root="s3://bucket/prefix")
    assert _state_folders(settings) == ((tmp_path / "home").resolve(),)
