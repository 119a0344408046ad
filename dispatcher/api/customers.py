"""``/v1/customers``: one profile across channels, and the unified history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from dispatcher.api.deps import ApiKeyDep, RuntimeDep, SessionDep
from dispatcher.api.notifications import RETRIES, field_problem
from dispatcher.api.openapi import problems
from dispatcher.api.problems import Problem, busy
from dispatcher.customer_schemas import CustomerIn, CustomerOut, PreferencesPatch
from dispatcher.customer_tables import Customer
from dispatcher.customers import FieldError, customer_out, patch_preferences, put_customer
from dispatcher.models import Event
from dispatcher.schemas import EventOut

router = APIRouter(prefix="/v1/customers", tags=["customers"])

CustomerId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@\-]+$")]


@router.put(
    "/{customer_id}", response_model=CustomerOut, responses=problems(400, 401, 413, 422, 503)
)
def upsert_customer(
    customer_id: CustomerId,
    body: CustomerIn,
    runtime: RuntimeDep,
    session: SessionDep,
    _: ApiKeyDep,
) -> CustomerOut:
    """Create or replace a customer's contacts and preferences."""
    for _try in range(RETRIES):
        try:
            customer = put_customer(session, customer_id, body, runtime.now())
            session.commit()
        except FieldError as exc:
            session.rollback()
            raise field_problem(exc) from None
        except IntegrityError:
            session.rollback()  # lost a race to a concurrent write of this customer: again
            continue
        return customer_out(session, customer)
    raise busy()


@router.get("/{customer_id}", response_model=CustomerOut, responses=problems(401, 404, 422, 503))
def get_customer(customer_id: CustomerId, session: SessionDep, _: ApiKeyDep) -> CustomerOut:
    """A customer's contacts (with their status) and preferences."""
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise Problem(404, "Not found", f"no customer {customer_id}")
    return customer_out(session, customer)


@router.patch(
    "/{customer_id}/preferences",
    response_model=CustomerOut,
    responses=problems(400, 401, 404, 413, 422, 503),
)
def update_preferences(
    customer_id: CustomerId,
    body: PreferencesPatch,
    runtime: RuntimeDep,
    session: SessionDep,
    _: ApiKeyDep,
) -> CustomerOut:
    """Change only the preferences given."""
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise Problem(404, "Not found", f"no customer {customer_id}")
    patch_preferences(session, customer, body, runtime.now())
    session.commit()
    return customer_out(session, customer)


@router.get(
    "/{customer_id}/history",
    response_model=list[EventOut],
    responses=problems(401, 404, 422, 503),
)
def customer_history(
    customer_id: CustomerId,
    session: SessionDep,
    _: ApiKeyDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[EventOut]:
    """Everything sent to this customer, on every channel, newest last."""
    if session.get(Customer, customer_id) is None:
        raise Problem(404, "Not found", f"no customer {customer_id}")
    events = session.exec(
        select(Event)
        .where(Event.customer_id == customer_id)
        .order_by(col(Event.id).desc())
        .limit(limit)
    ).all()
    return [EventOut.model_validate(e, from_attributes=True) for e in reversed(events)]
