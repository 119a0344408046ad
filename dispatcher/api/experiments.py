"""``/v1/experiments``: A/B variants of the cascades, stopped or promoted without a redeploy."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from sqlalchemy.exc import IntegrityError

from dispatcher.api.deps import ApiKeyDep, RuntimeDep, SessionDep
from dispatcher.api.notifications import RETRIES
from dispatcher.api.openapi import problems
from dispatcher.api.problems import Problem, busy
from dispatcher.variants import Action, UnknownExperiment, decide, describe, find

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])

Name = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_\-]*$")]


def _not_found(exc: UnknownExperiment) -> Problem:
    return Problem(
        404, "Not found", exc.message, errors=[{"field": exc.field, "message": exc.message}]
    )


@router.get("", responses=problems(401, 503))
def list_experiments(
    runtime: RuntimeDep, session: SessionDep, _: ApiKeyDep
) -> list[dict[str, Any]]:
    """Every experiment of the loaded cascades: variants, weights, statuses."""
    running = [c for c in runtime.cascades.values() if c.experiment is not None]
    return [describe(session, c) for c in sorted(running, key=lambda c: str(c.experiment_name))]


@router.get("/{name}", responses=problems(401, 404, 422, 503))
def get_experiment(
    name: Name, runtime: RuntimeDep, session: SessionDep, _: ApiKeyDep
) -> dict[str, Any]:
    """One experiment: its variants, their weights, channels and statuses."""
    try:
        return describe(session, find(runtime.cascades, name))
    except UnknownExperiment as exc:
        raise _not_found(exc) from None


@router.post("/{name}/variants/{variant}/{action}", responses=problems(401, 404, 422, 503))
def change_variant(
    name: Name,
    variant: Name,
    action: Action,
    runtime: RuntimeDep,
    session: SessionDep,
    _: ApiKeyDep,
) -> dict[str, Any]:
    """``stop`` (no new customers), ``promote`` (every new customer) or ``resume`` a variant.

    This process sees the change at once; other processes within a few seconds.
    """
    try:
        cascade = find(runtime.cascades, name)
    except UnknownExperiment as exc:
        raise _not_found(exc) from None
    for _try in range(RETRIES):
        try:
            decide(session, cascade, variant, action, runtime.now())
            session.commit()
        except UnknownExperiment as exc:
            session.rollback()
            raise _not_found(exc) from None
        except IntegrityError:
            session.rollback()  # a concurrent first decision on this variant: again
            continue
        runtime.experiments.forget()
        return describe(session, cascade)
    raise busy()
