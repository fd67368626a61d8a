"""Training pipelines: the code that made a version, kept so that it can be retrained.

A pipeline is a function `fit(data: pandas.DataFrame, params: dict[str, str]) -> model`
that returns a fitted model of the version's flavor. It is named at registration either
as an import path (`mypkg.train:fit`, importable where the server runs, or from its working
directory) or as a Python file (`train.py`, or `train.py:make_model`), which is stored in
the artifact store with its sha256 like the model's own files, so a retrain runs exactly
the code that was registered.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from turnout.errors import BadRequest
from turnout.store.artifacts import ArtifactStore
from turnout.types import JSON

DEFAULT_FUNCTION = "fit"
_IMPORT = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
_FUNCTION = re.compile(r"^[A-Za-z_][\w]*$")

Fit = Callable[[Any, dict[str, str]], Any]


@dataclass(frozen=True)
class PipelineRef:
    """What a user named at registration."""

    kind: str
    """`import` or `file`."""
    ref: str
    """`pkg.mod:fit` for an import; the file's name for a file."""
    function: str = DEFAULT_FUNCTION
    path: Path | None = None
    """The file on this machine (kind `file`)."""


def parse_pipeline(text: str) -> PipelineRef:
    """`pkg.mod:fit` -> import; `path/train.py` or `path/train.py:fn` -> file (must exist)."""
    text = text.strip()
    file_part, _, function = text.partition(".py:")
    if text.endswith(".py") or function:
        path = Path(text if not function else file_part + ".py").expanduser()
        function = function or DEFAULT_FUNCTION
        if not _FUNCTION.match(function):
            raise BadRequest(f"pipeline function {function!r} is not a Python name")
        if not path.is_file():
            raise BadRequest(f"pipeline file {path} does not exist")
        return PipelineRef("file", path.name, function, path)
    if not _IMPORT.match(text):
        raise BadRequest(
            f"pipeline {text!r} is neither an import path (package.module:function) nor a "
            "Python file (train.py or train.py:function)"
        )
    return parse_import(text)


def parse_import(text: str) -> PipelineRef:
    """An import path only (`pkg.mod:fit`): all a remote caller may name, since a file path
    would make the server read, and store, a file of its own."""
    text = text.strip()
    if not _IMPORT.match(text):
        raise BadRequest(
            "an import pipeline is package.module:function, importable on the server; "
            "send a pipeline file as pipeline_file instead of naming a path"
        )
    return PipelineRef("import", text, text.partition(":")[2])


def store_pipeline(ref: PipelineRef, artifacts: ArtifactStore) -> dict[str, JSON]:
    """What the version records: the import path (and, when found, its source's sha256),
    or the file stored content-addressed."""
    if ref.kind == "file":
        assert ref.path is not None
        sha, size = artifacts.put(ref.path)
        return {"kind": "file", "name": ref.ref, "sha256": sha, "size": size,
                "function": ref.function}  # fmt: skip
    module = ref.ref.partition(":")[0]
    spec = _find_spec(module)
    if spec is None:
        raise BadRequest(
            f"pipeline module {module!r} cannot be imported on the server; install it, or "
            "start the server from the folder that holds it, or register a file instead"
        )
    record: dict[str, JSON] = {"kind": "import", "ref": ref.ref, "function": ref.function}
    origin = getattr(spec, "origin", None)
    if origin and Path(origin).is_file():
        record["source_sha256"] = hashlib.sha256(Path(origin).read_bytes()).hexdigest()
    return record


def check_stored(record: dict[str, JSON]) -> dict[str, JSON]:
    """A pipeline record carried over from a parent version (retraining keeps it as is)."""
    kind = record.get("kind")
    if kind == "file" and isinstance(record.get("sha256"), str):
        return dict(record)
    if kind == "import" and isinstance(record.get("ref"), str):
        return dict(record)
    raise BadRequest(f"not a pipeline record: {record!r}")


def load_pipeline(record: dict[str, JSON], artifacts: ArtifactStore, work_dir: Path) -> Fit:
    """The pipeline's function, imported from the stored file (verified) or the module."""
    function = str(record.get("function") or DEFAULT_FUNCTION)
    if record.get("kind") == "file":
        target = work_dir / "pipeline" / str(record.get("name") or "pipeline.py")
        artifacts.fetch(str(record["sha256"]), target)
        name = f"turnout_pipeline_{str(record['sha256'])[:16]}"
        spec = importlib.util.spec_from_file_location(name, target)
        if spec is None or spec.loader is None:
            raise BadRequest(f"cannot load the pipeline file {record.get('name')}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # pickling the fitted model may need its classes
        sys.path.insert(0, str(target.parent))
        spec.loader.exec_module(module)
    else:
        module_name = str(record["ref"]).partition(":")[0]
        if str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        module = importlib.import_module(module_name)
    fit = getattr(module, function, None)
    if not callable(fit):
        raise BadRequest(f"the pipeline has no function {function!r}")
    return fit  # type: ignore[no-any-return]


def _find_spec(module: str) -> Any:
    added = str(Path.cwd()) not in sys.path
    if added:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    finally:
        if added:
            sys.path.remove(str(Path.cwd()))
