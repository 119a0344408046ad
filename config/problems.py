"""Problems of cascade files: where each is (file, line, field) and how it is worded.

pydantic's errors are turned into an operator's words: an unknown key or channel
gets "did you mean", the branches of a union report once, and the line comes from
the composed YAML tree.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from providers.base import Channel


def not_a_bool(value: object) -> object:
    """A number's validator: YAML reads ``true``, ``yes`` and ``on`` as booleans, and
    pydantic would take them as 1; refused where a number is meant."""
    if isinstance(value, bool):
        raise ValueError("a number is needed here, not true/false")
    return value


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one file."""

    file: Path
    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.field}: {self.message}"


class CascadeConfigError(Exception):
    """One or more cascade files are invalid."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def line_of(node: yaml.Node | None, path: Iterable[str | int]) -> int | None:
    """Walk the composed YAML tree along ``path`` and return the 1-based line."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]  # the key's line
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def field_path(loc: tuple[Any, ...]) -> list[str | int]:
    # pydantic adds union/branch tags such as 'Member' or 'function-after[...]'.
    return [p for p in loc if isinstance(p, int) or (p[:1].islower() and "[" not in p)]


def in_order(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: p.line or 0)


def schema_problems(
    path: Path,
    node: yaml.Node | None,
    data: dict[str, Any],
    exc: ValidationError,
    known_keys: Callable[[list[str | int]], Collection[str]],
) -> list[Problem]:
    """pydantic's errors of one file, worded for an operator, one per field."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for error in exc.errors():
        parts = field_path(error["loc"])
        field = ".".join(str(p) for p in parts) or "(cascade)"
        message = error["msg"].removeprefix("Value error, ")
        kind, given = error["type"], error.get("input")
        if kind == "extra_forbidden":
            close = difflib.get_close_matches(str(parts[-1]), known_keys(parts), n=1)
            message = "unknown key" + (f" (did you mean `{close[0]}`?)" if close else "")
        elif kind == "too_short" and parts == ["steps"] and data.get("steps"):
            continue  # pydantic counts only the steps that parsed: their errors say why
        elif _is_group_member(parts) and kind in _UNION_BRANCHES:
            # ``among`` items are a channel name or a mapping: report only the branch
            # the item was written as.
            if isinstance(given, str) and kind == "enum":
                message = unknown_channel(given)
            elif isinstance(given, dict) or kind != "enum":
                continue
        elif kind == "enum" and parts[-1] == "channel" and isinstance(given, str):
            message = unknown_channel(given)
        if field in seen:
            continue  # one problem per field
        seen.add(field)
        problems.append(Problem(path, field, message, line_of(node, parts)))
    return problems


#: Error types of the two branches of a group member (``Channel | Member``).
_UNION_BRANCHES = {"model_type", "model_attributes_type", "dict_type", "enum"}


def _is_group_member(parts: list[str | int]) -> bool:
    return len(parts) == 4 and parts[0] == "steps" and parts[2] == "among"


def unknown_channel(value: str, names: list[str] | None = None) -> str:
    """ "unknown channel 'smss' (did you mean 'sms'? known: ...)"."""
    names = names or [c.value for c in Channel]
    close = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown channel {value!r} ({hint}known: {', '.join(names)})"
