"""Secrets hidden from what people see: URLs' passwords, whether written as `user:pw@` or
as query parameters (`?password=`, `?sslpassword=`, `?token=` ...), in any shown text."""

from __future__ import annotations

import re
from typing import Any

HIDDEN = "***"

_SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "auth", "credential", "signature")
"""A parameter whose name holds one of these carries a secret (password, sslpassword,
api_key, access_token, X-Amz-Signature, ...)."""

_USERINFO = re.compile(r"(?P<head>[A-Za-z][\w+.-]*://[^\s:/@'\"]*):(?P<secret>[^\s/'\"]*)@")
_PARAMETER = re.compile(r"(?P<name>[A-Za-z_][\w.-]*)=(?P<value>[^&;\s'\"]+)")


def is_secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def text(value: str) -> str:
    """Text (a URL, a message, a log) with every URL password and `secret=value` hidden."""
    value = _USERINFO.sub(lambda m: f"{m['head']}:{HIDDEN}@", value)
    return _PARAMETER.sub(
        lambda m: f"{m['name']}={HIDDEN}" if is_secret(m["name"]) else m[0], value
    )


def deep(value: Any) -> Any:
    """Every string inside `value` (mappings, lists) passed through `text`."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {k: deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [deep(v) for v in value]
    return value
