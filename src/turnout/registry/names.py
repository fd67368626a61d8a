"""Names of models and deployments: safe in URLs, paths, headers and `NAME:VERSION` refs."""

from __future__ import annotations

import re

from turnout.errors import BadRequest

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(name: str, what: str) -> str:
    if not NAME.match(name or ""):
        raise BadRequest(
            f"invalid {what} name {name!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def parse_ref(ref: str) -> tuple[str, int | None]:
    """`churn` or `churn:3` as (name, version)."""
    name, sep, version = ref.partition(":")
    check_name(name, "model")
    if not sep:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise BadRequest(f"invalid version in {ref!r}: expected NAME:N with N >= 1")
    return name, int(version)
