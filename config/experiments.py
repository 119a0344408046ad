"""The ``experiment:`` block of a cascade file: A/B variants of the cascade's steps.

A variant overrides the cascade's ``steps`` (and optionally its ``ttl`` and ``order``); a variant
without ``steps`` is the cascade as written (a control). Each variant is checked with
the same rules as the cascade's own steps, and its problems name
``experiment.variants[i]...`` (:func:`variant_problems`).

Who gets which variant is decided by :mod:`dispatcher.experiments` (a stable hash of the
customer id and the experiment name against the weights).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from config.capabilities import Capabilities
from config.cascade_rules import cascade_problems
from config.durations import Duration
from config.problems import not_a_bool

if TYPE_CHECKING:
    from config.cascades import Cascade, Step

NAME = r"^[a-z0-9][a-z0-9_\-]{0,63}$"


class Variant(BaseModel):
    """One arm of the experiment: a share of the customers and the steps they get."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=NAME)
    #: relative share; weights need not add up to 1 or 100. Finite: with ``.inf`` or ``.nan``
    #: :func:`dispatcher.experiments.assign` would send every customer to the last variant.
    weight: Annotated[float, BeforeValidator(not_a_bool)] = Field(gt=0, allow_inf_nan=False)
    description: str = ""
    steps: tuple[Step, ...] | None = Field(default=None, min_length=1)  #: default: the cascade's
    ttl: Duration | None = None  #: default: the cascade's
    #: default: the cascade's; ``static`` vs ``adaptive`` variants compare the two orders
    order: Literal["static", "adaptive"] | None = None


class Experiment(BaseModel):
    """Variants of one cascade, compared in ``/v1/stats``; the first is the control."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(default=None, pattern=NAME)  #: default: the cascade's name
    variants: tuple[Variant, ...]

    @field_validator("variants")
    @classmethod
    def _two_unique(cls, value: tuple[Variant, ...]) -> tuple[Variant, ...]:
        # Checked after every variant parsed: a broken variant reports only its own error.
        # Also the weights' sum: each is finite, but 1e308 twice is inf, and assign() would
        # then send every customer to the last variant.
        if len(value) < 2:
            raise ValueError("an experiment needs at least two variants (the first is the control)")
        names = [v.name for v in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"variant names must be unique: {', '.join(twice)} given twice")
        if not math.isfinite(sum(v.weight for v in value)):
            raise ValueError(
                "the weights add up to more than a float can hold: "
                "use smaller numbers (only their ratio counts)"
            )
        return value

    def weights(self) -> list[tuple[str, float]]:
        """(variant name, weight) in file order, as :func:`dispatcher.experiments.assign` takes."""
        return [(v.name, v.weight) for v in self.variants]


def with_variant(cascade: Cascade, variant: Variant) -> Cascade:
    """The cascade as ``variant`` runs it: its steps, TTL and order replaced when it gives them."""
    update: dict[str, object] = {}
    if variant.steps is not None:
        update["steps"] = variant.steps
    if variant.ttl is not None:
        update["ttl"] = variant.ttl
    if variant.order is not None:
        update["order"] = variant.order
    return cascade.model_copy(update=update) if update else cascade


def variant_problems(
    cascade: Cascade, capabilities: Capabilities | None
) -> list[tuple[list[str | int], str]]:
    """The cascade rules on each variant, as problems of ``experiment.variants.<i>``.

    Only what the variant changes is reported here: a problem the cascade itself has is
    reported once, at the cascade's own field.
    """
    if cascade.experiment is None:
        return []
    own = {(tuple(parts), message) for parts, message in cascade_problems(cascade, capabilities)}
    problems: list[tuple[list[str | int], str]] = []
    for index, variant in enumerate(cascade.experiment.variants):
        if variant.steps is None and variant.ttl is None:
            continue
        at: list[str | int] = ["experiment", "variants", index]
        for parts, message in cascade_problems(with_variant(cascade, variant), capabilities):
            if (tuple(parts), message) in own:
                continue
            if parts[0] == "steps" or parts == ["ttl"]:
                problems.append(([*at, *parts], message))
            else:  # a template that does not cover a channel only this variant uses
                problems.append(([*at, "steps"], f"{'.'.join(map(str, parts))}: {message}"))
        if capabilities is not None:
            available = capabilities.available()
            for step_index, step in enumerate(variant.steps or ()):
                for member in step.members():
                    if member.channel not in available:
                        problems.append(
                            (
                                [*at, "steps", step_index, "channel"],
                                f"no provider is configured for {member.channel} "
                                "and the sandbox is off",
                            )
                        )
    return problems
