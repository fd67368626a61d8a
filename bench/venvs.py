"""One virtualenv per peer under bench/.venvs/, created with pip once and reused while its
requirements are unchanged, so peers never share (or fight over) turnout's dependencies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

VENVS = Path(__file__).resolve().parent / ".venvs"
PIP_TIMEOUT_S = 900


class InstallFailed(RuntimeError):
    """Creating the venv or installing a peer's requirements failed."""


def ensure(name: str, requirements: list[str], *, log: Path) -> Path:
    """The venv's folder, with `requirements` installed (skipped when its stamp matches)."""
    folder = VENVS / name
    stamp = folder / ".bench-requirements.json"
    wanted = json.dumps(sorted(requirements))
    python = folder / "bin" / "python"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return folder
    log.parent.mkdir(parents=True, exist_ok=True)
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    steps = [
        [str(base_python), "-m", "venv", "--clear", str(folder)],
        [str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"],
        [str(python), "-m", "pip", "install", "-q", *requirements],
    ]
    with log.open("ab") as out:
        for step in steps:
            out.write(f"$ {' '.join(step)}\n".encode())
            out.flush()
            try:
                done = subprocess.run(
                    step, stdout=out, stderr=subprocess.STDOUT, timeout=PIP_TIMEOUT_S
                )
            except subprocess.TimeoutExpired as error:
                message = f"{' '.join(step)} timed out after {PIP_TIMEOUT_S} s"
                raise InstallFailed(message) from error
            if done.returncode != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-8:])
                raise InstallFailed(f"{' '.join(step[2:5])}... failed:\n{tail}")
    stamp.write_text(wanted)
    return folder


def versions(python: Path, packages: list[str]) -> dict[str, str]:
    """Installed versions of `packages` as that interpreter sees them ('-' when absent)."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(p):\n"
        "    try:\n        return m.version(p)\n"
        "    except m.PackageNotFoundError:\n        return '-'\n"
        "print(json.dumps({p: v(p) for p in sys.argv[1:]}))\n"
    )
    done = subprocess.run(
        [str(python), "-c", code, *packages], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        return dict.fromkeys(packages, "?")
    return dict(json.loads(done.stdout))
