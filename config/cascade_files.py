"""Cascade files: loading a YAML file or a directory of them, and their validation.

``yaml.safe_load`` plus :class:`config.cascades.Cascade`. Every problem found is reported
with the file, the line when known, and the field path, and a wrong file fails at
startup, never at send time.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any, TypeVar

import yaml
from jinja2 import TemplateSyntaxError
from pydantic import BaseModel, ValidationError

from config.capabilities import Capabilities
from config.cascade_rules import cascade_problems
from config.cascades import Cascade, Member, Step
from config.experiments import Experiment, Variant, variant_problems
from config.problems import (
    CascadeConfigError as CascadeConfigError,  # re-exported: callers catch it from here
)
from config.problems import Problem, in_order, line_of, schema_problems
from config.templates import (
    ChannelTemplate,
    RenderError,
    compile_template,
    render,
    sample_data,
    variables,
)
from providers.base import Channel


def load_file(path: Path, available: Capabilities | Collection[Channel] | None = None) -> Cascade:
    """Load and validate one cascade file; raise :class:`CascadeConfigError`.

    ``available``: what the configured providers can send and report (a bare set of
    channels means default provider settings); None checks signals against the defaults
    and skips the provider check.
    """
    capabilities = Capabilities.coerce(available)
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise CascadeConfigError([Problem(path, "(file)", f"cannot read: {exc}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise CascadeConfigError(
            [Problem(path, "(yaml)", f"not valid YAML: {reason}", line)]
        ) from None
    if not isinstance(data, dict):
        raise CascadeConfigError(
            [Problem(path, "(file)", "expected a mapping with name and steps")]
        )
    try:
        cascade = Cascade.model_validate(data)
    except ValidationError as exc:
        # Report the schema errors and, on the steps and experiment variants that did
        # parse, the cross-field rules too: one pass shows every problem of the file.
        problems = schema_problems(path, node, data, exc, _known_keys)
        partial = _partial(data)
        if partial is not None:
            problems += _rule_problems(path, node, *partial, capabilities)
        raise CascadeConfigError(in_order(problems)) from None
    variants = cascade.experiment.variants if cascade.experiment else ()
    kept, kept_variants = list(range(len(cascade.steps))), list(range(len(variants)))
    problems = _rule_problems(path, node, cascade, kept, kept_variants, capabilities)
    if problems:
        raise CascadeConfigError(in_order(problems))
    return cascade


def _known_keys(parts: list[str | int]) -> Collection[str]:
    """The keys allowed where ``parts`` points (for "did you mean")."""
    if len(parts) == 1:
        return Cascade.model_fields
    if parts[0] == "steps" and len(parts) == 3:
        return Step.model_fields
    if parts[0] == "steps" and len(parts) == 5 and parts[2] == "among":
        return Member.model_fields
    if parts[0] == "templates" and len(parts) == 4:
        return ChannelTemplate.model_fields
    if parts[0] == "experiment":
        return _experiment_keys(parts[1:])
    return ()


def _experiment_keys(parts: list[str | int]) -> Collection[str]:
    """The keys allowed under ``experiment`` where ``parts`` points."""
    if len(parts) == 1:
        return Experiment.model_fields
    if len(parts) == 3:
        return Variant.model_fields
    if len(parts) == 5 and parts[2] == "steps":
        return Step.model_fields
    return ()


_Model = TypeVar("_Model", bound=BaseModel)


def _parsed(model: type[_Model], raw: Any) -> tuple[list[_Model], list[int]]:
    """The items of the list ``raw`` that ``model`` accepts, and each one's index in it."""
    items: list[_Model] = []
    kept: list[int] = []
    for index, item in enumerate(raw if isinstance(raw, list) else []):
        try:
            items.append(model.model_validate(item))
            kept.append(index)
        except ValidationError:
            continue
    return items, kept


def _partial(data: dict[str, Any]) -> tuple[Cascade, list[int], list[int]] | None:
    """The cascade made of the steps that parsed (and the top-level fields that did), with
    each kept step's index in the file, and each kept experiment variant's; None when no
    step parsed."""
    steps, kept = _parsed(Step, data.get("steps"))
    if not steps:
        return None
    rest = {k: v for k, v in data.items() if k in Cascade.model_fields and k != "steps"}
    experiment, kept_variants = _partial_experiment(rest.pop("experiment", None))
    if experiment is not None:
        rest["experiment"] = experiment
    for _ in range(len(rest) + 1):
        try:
            cascade = Cascade.model_validate({**rest, "name": "partial", "steps": steps})
        except ValidationError as exc:
            for error in exc.errors():
                rest.pop(str(error["loc"][0]), None)  # drop what failed: it is reported
            continue
        return cascade, kept, kept_variants if cascade.experiment is not None else []
    return None


def _partial_experiment(raw: Any) -> tuple[Experiment | None, list[int]]:
    """The experiment made of the variants that parsed, with each one's index in the file.

    Its own checks (two variants at least, unique names, the weights' sum) are skipped: a
    broken variant reports its schema error, the others get their rule checks.
    """
    if not isinstance(raw, dict):
        return None, []
    try:
        experiment = Experiment.model_validate(raw)
        return experiment, list(range(len(experiment.variants)))
    except ValidationError:
        pass
    variants, kept = _parsed(Variant, raw.get("variants"))
    if not variants:
        return None, []
    return Experiment.model_construct(name=None, variants=tuple(variants)), kept


def _rule_problems(
    path: Path,
    node: yaml.Node | None,
    cascade: Cascade,
    kept: list[int],
    kept_variants: list[int],
    capabilities: Capabilities | None,
) -> list[Problem]:
    """Cross-field rules, templates and available channels; step and variant indices as in
    the file (``kept``, ``kept_variants``: the file's index of each one checked)."""

    def where(parts: list[str | int]) -> list[str | int]:
        if len(parts) > 1 and parts[0] == "steps" and isinstance(parts[1], int):
            return ["steps", kept[parts[1]], *parts[2:]]
        if parts[:2] == ["experiment", "variants"] and len(parts) > 2:
            index = parts[2]
            if isinstance(index, int):
                return ["experiment", "variants", kept_variants[index], *parts[3:]]
        return parts

    problems = []
    for parts, message in cascade_problems(cascade, capabilities):
        at = where(parts)
        problems.append(Problem(path, ".".join(str(p) for p in at), message, line_of(node, at)))
    problems += _check_templates(path, cascade, node)
    for index, channel in _unavailable(cascade, capabilities):
        at = where(["steps", index, "channel"])
        message = f"no provider is configured for {channel} and the sandbox is off"
        problems.append(Problem(path, ".".join(map(str, at)), message, line_of(node, at)))
    for parts, message in variant_problems(cascade, capabilities):
        at = where(parts)
        problems.append(Problem(path, ".".join(map(str, at)), message, line_of(node, at)))
    return problems


def _check_templates(path: Path, cascade: Cascade, node: yaml.Node | None) -> list[Problem]:
    """Compile every variant, then render it with the template's sample data.

    The sample is the cascade's ``samples`` entry for the template, else stand-ins for
    the variables of the default variant: a locale variant that needs other data
    fails here, naming itself, instead of at send time.
    """
    problems = []
    for name in cascade.templates:
        compiled: list[tuple[str, list[str], ChannelTemplate]] = []
        for locale, per_channel in cascade.variants(name).items():
            where = ["templates", name] if locale == cascade.default_locale else []
            for channel, template in per_channel.items():
                parts = [*(where or ["locales", locale, name]), str(channel)]
                try:
                    compile_template(template)
                except TemplateSyntaxError as exc:
                    message = f"template syntax: {exc.message}"
                    problems.append(Problem(path, ".".join(parts), message, line_of(node, parts)))
                    continue
                compiled.append((locale, parts, template))
        given = cascade.samples.get(name)
        source = f"samples.{name}" if given is not None else "the default's variables"
        defaults = [t for locale, _, t in compiled if locale == cascade.default_locale]
        sample = given if given is not None else sample_data(set().union(*map(variables, defaults)))
        for locale, parts, template in compiled:
            field = ".".join(parts)
            try:
                render(template, sample, field)
            except RenderError as exc:
                message = f"locale {locale} does not render with {source}: {exc.message}"
                problems.append(Problem(path, field, message, line_of(node, parts)))
    return problems


def _unavailable(cascade: Cascade, capabilities: Capabilities | None) -> list[tuple[int, Channel]]:
    """(step index, channel) of each channel without a provider (and no sandbox)."""
    if capabilities is None:
        return []
    available = capabilities.available()
    return [
        (index, member.channel)
        for index, step in enumerate(cascade.steps)
        for member in step.members()
        if member.channel not in available
    ]


def load_cascades(
    directory: Path, available: Capabilities | Collection[Channel] | None = None
) -> dict[str, Cascade]:
    """Load every ``*.yaml``/``*.yml`` in ``directory``; all problems at once."""
    if not directory.is_dir():
        raise CascadeConfigError([Problem(directory, "(directory)", "no such directory")])
    cascades: dict[str, Cascade] = {}
    experiments: dict[str, str] = {}  #: experiment name -> the cascade running it
    problems: list[Problem] = []
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    for path in files:
        try:
            cascade = load_file(path, available)
        except CascadeConfigError as exc:
            problems.extend(exc.problems)
            continue
        if cascade.name in cascades:
            problems.append(Problem(path, "name", f"cascade {cascade.name!r} is defined twice"))
        experiment = cascade.experiment_name
        if experiment is not None and experiment in experiments:
            message = (
                f"experiment {experiment!r} is also run by cascade {experiments[experiment]!r}"
            )
            problems.append(Problem(path, "experiment.name", message))
        if experiment is not None:
            experiments[experiment] = cascade.name
        cascades[cascade.name] = cascade
    if not files:
        problems.append(Problem(directory, "(directory)", "no cascade files (*.yaml) found"))
    if problems:
        raise CascadeConfigError(problems)
    return cascades
