"""YAML as people write specs, plans and policies: plain documents, no anchors or aliases.

Aliases let a few hundred bytes expand into millions of nodes ("billion laughs"); nothing
turnout reads needs them, so the loader refuses them before anything is built.
"""

from __future__ import annotations

import yaml
from yaml.composer import ComposerError
from yaml.nodes import Node


class _PlainLoader(yaml.SafeLoader):
    """The safe loader, refusing any anchor (`&name`) or alias (`*name`) where it meets it."""

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ComposerError(
                None,
                None,
                "anchors and aliases (&name, *name) are not accepted; write the values out",
                event.start_mark,
            )
        return super().compose_node(parent, index)


def load(text: str) -> object:
    """One YAML document; raises `yaml.YAMLError` (aliases included) for callers to word."""
    return yaml.load(text, Loader=_PlainLoader)
