"""The fast tier's list of slow tests names tests that exist."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import SLOW, is_slow

ROOT = Path(__file__).resolve().parent.parent


def functions_in(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }


@pytest.mark.parametrize("entry", SLOW)
def test_every_slow_entry_names_an_existing_test(entry: str) -> None:
    path, _, function = entry.partition("::")
    assert (ROOT / path).is_file(), f"{path} does not exist"
    if function:
        assert function in functions_in(path), f"{path} has no {function}"


def test_a_parametrized_test_is_slow_in_every_case() -> None:
    assert is_slow(
        "tests/monitoring/test_predlog.py::test_one_flush_writes_one_file_for_every_deployment[thread]"
    )
    assert is_slow("tests/monitoring/test_metrics.py::test_constant_predictions")
    assert not is_slow(
        "tests/monitoring/test_predlog.py::test_close_writes_everything_and_is_idempotent"
    )
