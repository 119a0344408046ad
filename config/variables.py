"""The ``CASCADE_*`` variables as an operator writes them: which exist, and how to say an error.

pydantic-settings ignores variables it does not know, so a typo such as
``CASCADE_SWEEP_INTERVALL`` would silently keep the default: :func:`unknown_variables`
names each unknown one with the closest known name. Settings that take JSON (lists and
maps) say so in their errors (:func:`json_hint`), and field paths become the variable's
name (:func:`variable_name`).
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from providers import REGISTRY
from providers.base import Channel

PREFIX = "CASCADE_"

#: Variables of the test suite and tools, not settings of a process.
IGNORED_PREFIXES = ("CASCADE_TEST_",)

#: Set by ``dispatcher`` itself for the processes it starts (their name in logs and Flower).
INTERNAL = frozenset({"CASCADE_PROCESS"})

#: What a JSON value of each setting looks like, by its field path (``*``: any key).
JSON_EXAMPLES: dict[str, str] = {
    "channels": '{"sms": ["twilio", "smsru"]}',
    "channels.*": '["twilio", "smsru"]',
    "costs": '{"sms": 0.05, "whatsapp": 0.005}',
    "max_per_day": '{"marketing": 3}',
    "rate_limits": '{"telegram": 30, "whatsapp": "80/10"}',
    "providers": '{"twilio": {"account_sid": "AC..."}}',
    "providers.*": '{"account_sid": "AC..."}',
    "sandbox": '{"enabled": true}',
    "sandbox.channels": '{"push": {"read_probability": 0.3}}',
    "sandbox.channels.*": '{"read_probability": 0.3}',
    "sandbox.scenarios": '{"+15550000000": "rejected"}',
}


def variable_name(loc: Sequence[Any]) -> str:
    """``("sandbox", "channels", "push")`` -> ``CASCADE_SANDBOX__CHANNELS__PUSH``."""
    parts = [p.value if isinstance(p, Enum) else p for p in loc]
    # pydantic marks a bad dict key with "[key]" after it: the variable names the key itself.
    return PREFIX + "__".join(str(p).upper() for p in parts if not str(p).startswith("["))


def json_hint(loc: Sequence[Any]) -> str:
    """The sentence added to an error of a JSON-valued setting: what to write instead."""
    parts = [str(p.value if isinstance(p, Enum) else p) for p in loc]
    keys = [".".join(parts)]
    if len(parts) > 1:
        keys.append(".".join([*parts[:-1], "*"]))
    for key in keys:
        if key in JSON_EXAMPLES:
            return f"this setting takes JSON, e.g. {variable_name(parts)}='{JSON_EXAMPLES[key]}'"
    return "this setting takes JSON"


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _submodel(annotation: Any) -> type[BaseModel] | None:
    annotation = _unwrap(annotation)
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def _provider_problem(parts: list[str]) -> tuple[int, list[str]] | None:
    """``providers``' keys are provider names, then that provider's own settings."""
    if len(parts) < 2:
        return None
    if parts[1] not in REGISTRY:
        return 1, sorted(REGISTRY)
    fields = [*REGISTRY[parts[1]].config_model.model_fields, "rate_limit"]
    if len(parts) > 2 and parts[2] not in fields:
        return 2, fields
    return None


def _problem(parts: list[str], model: type[BaseModel]) -> tuple[int, list[str]] | None:
    """Where ``parts`` leaves the known names: (index of the bad part, names known there)."""
    fields = model.model_fields
    if parts[0] not in fields:
        return 0, list(fields)
    rest = parts[1:]
    if not rest:
        return None
    if parts[0] == "providers" and "providers" in fields and model.__name__ == "Settings":
        return _provider_problem(parts)
    annotation = _unwrap(fields[parts[0]].annotation)
    submodel = _submodel(annotation)
    if submodel is not None:
        found = _problem(rest, submodel)
        return None if found is None else (found[0] + 1, found[1])
    if get_origin(annotation) is dict:
        key_type, value_type = get_args(annotation)
        if key_type is Channel and rest[0] not in {c.value for c in Channel}:
            return 1, [c.value for c in Channel]
        value_model = _submodel(value_type)
        if value_model is not None and len(rest) > 1:
            found = _problem(rest[1:], value_model)
            return None if found is None else (found[0] + 2, found[1])
    return None


def suggestion(name: str, model: type[BaseModel]) -> str | None:
    """For a ``CASCADE_*`` name no setting reads: the closest known name ("" if none is
    close); None when the name is known."""
    parts = name.upper().removeprefix(PREFIX).lower().split("__")
    found = _problem(parts, model)
    if found is None:
        return None
    index, known = found
    close = difflib.get_close_matches(parts[index], known, n=1, cutoff=0.6)
    return variable_name([*parts[:index], close[0]]) if close else ""


def unknown_variables(names: Iterable[str], model: type[BaseModel]) -> list[str]:
    """One warning per ``CASCADE_*`` variable that no setting reads, with a suggestion."""
    warnings = []
    for name in sorted(set(names)):
        upper = name.upper()
        if not upper.startswith(PREFIX) or upper.startswith(IGNORED_PREFIXES) or upper in INTERNAL:
            continue
        close = suggestion(name, model)
        if close is None:
            continue
        message = f"unknown setting {name}"
        warnings.append(message + (f" (did you mean {close}?)" if close else ""))
    return warnings
