"""One parser for what people write by hand (rollout plans, deployment specs, retrain
policies): YAML text or an already parsed mapping, validated by a pydantic model, with every
problem reported in one BadRequest that names its place (`plan.challenge.steps[1]: ...`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from turnout import yamltext
from turnout.errors import BadRequest

MAX_PROBLEMS_SHOWN = 5

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True, kw_only=True)
class SpecKind(Generic[M]):
    """One kind of hand-written document and how its problems are worded."""

    model: type[M]
    noun: str
    """What it is called in messages: `plan`, `deployment spec`, `retrain policy`."""
    short: str
    """What its messages start with: `plan` gives `invalid plan: ...`."""
    keys: str
    """Its top-level keys as shown when it is not a mapping, e.g. `(deployment, model)`."""
    root: str = ""
    """The first part of every problem's place: `plan` gives `plan.warmup: ...`."""
    empty: str | None = None
    """What to say of an empty YAML document (None: that it is not a mapping)."""
    sections: str = "must be a mapping of settings, true (defaults) or false (skip)"
    """What to say when a section is not a mapping."""
    special: Callable[[ErrorDetails], str | None] | None = None
    """Wording of the kind's own cases (None: the usual wording)."""

    def parse(self, data: object) -> M:
        """The document from YAML text or an already parsed mapping."""
        return self.validate(self._load(data) if isinstance(data, str) else data)

    def validate(self, data: object) -> M:
        """The document from an already parsed mapping."""
        if not isinstance(data, Mapping):
            raise BadRequest(
                f"a {self.noun} must be a mapping {self.keys}, not {type(data).__name__}"
            )
        try:
            return self.model.model_validate(data)
        except ValidationError as error:
            raise self.error(error) from None

    def error(self, error: ValidationError) -> BadRequest:
        problems = [self._problem(detail) for detail in error.errors()]
        shown = problems[:MAX_PROBLEMS_SHOWN]
        if len(problems) > len(shown):
            shown.append(f"and {len(problems) - len(shown)} more")
        return BadRequest(f"invalid {self.short}: " + "; ".join(shown))

    def _load(self, text: str) -> object:
        try:
            data = yamltext.load(text)
        except yaml.YAMLError as error:
            raise BadRequest(f"the {self.short} is not valid YAML: {yaml_problem(error)}") from None
        if data is None and self.empty is not None:
            raise BadRequest(self.empty)
        return data

    def _problem(self, detail: ErrorDetails) -> str:
        loc = tuple(detail["loc"])
        where = place(self.root, loc)
        special = self.special(detail) if self.special is not None else None
        if special is not None:
            return f"{where}: {special}"
        kind = detail["type"]
        if kind == "extra_forbidden":
            section = section_at(self.model, loc[:-1])
            known = f" (known: {', '.join(keys_of(section))})" if section is not None else ""
            return f"{where}: unknown key{known}"
        if kind == "missing":
            return f"{where}: required"
        if kind == "model_type":
            return f"{where}: {self.sections}"
        message = str(detail["msg"]).removeprefix("Value error, ")
        return f"{where}: {message.replace('Input should be', 'must be')}"


def place(root: str, loc: tuple[int | str, ...]) -> str:
    """`plan` and ("steps", 1) -> `plan.steps[1]`; without a root, `steps[1]`."""
    text = root
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.removeprefix(".") or root or "spec"


def section_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model whose keys are valid at `loc` (e.g. `rollout.warmup`), if it is one."""
    section = model
    for part in loc:
        fields = {info.alias or name: info for name, info in section.model_fields.items()}
        info = fields.get(str(part))
        options = (info.annotation, *get_args(info.annotation)) if info is not None else ()
        models = [o for o in options if isinstance(o, type) and issubclass(o, BaseModel)]
        if not models:
            return None
        section = models[0]
    return section


def keys_of(section: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in section.model_fields.items()]


def yaml_problem(error: yaml.YAMLError) -> str:
    """Where the YAML broke and why, on one line."""
    mark: Any = getattr(error, "problem_mark", None)
    problem = " ".join(str(getattr(error, "problem", None) or error).split())
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
