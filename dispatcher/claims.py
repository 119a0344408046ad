"""The gate before every provider call: claiming attempts, in rounds.

A claim is a committed compare-and-set ``pending -> sending`` with a fresh claim
token; a duplicate Celery message finds no pending row and sends nothing. The
sends that arrive together in one process are claimed in one round
(:class:`~dispatcher.batch.Batch`): one ``UPDATE … WHERE id IN (…) AND state =
'pending' RETURNING id``, then one read each of their attempts, notifications and
contacts, and one transaction. An id twice in a round is claimed once: its
second message gets ``not_claimed``, as it would one transaction later.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from dispatcher.columns import UTCDateTime
from dispatcher.content import refusal
from dispatcher.customer_tables import ContactPoint
from dispatcher.decisions import cancelled, failed
from dispatcher.inbound import window_open
from dispatcher.lifecycle import apply
from dispatcher.links import rewrite
from dispatcher.models import Attempt, Notification
from dispatcher.runtime import Runtime
from dispatcher.state_statements import NO_SYNC
from dispatcher.states import OPEN_STATES, AttemptState, NotificationState
from dispatcher.tokens import receipt_token
from dispatcher.work import Work, unit_of_work
from providers.base import Channel, Message, Provider, TemplateRef

#: What a claimed attempt needs to be sent (its message and providers), or why it is not sent.
Prepared = tuple[Message, list[Provider]] | str


@dataclass(frozen=True, slots=True)
class Claimed:
    """One caller's share of a round: its claim token (None: not claimed) and what to send."""

    token: str | None
    prepared: Prepared


_CLAIM = (
    update(Attempt)
    .where(
        col(Attempt.id).in_(bindparam("ids", expanding=True)),
        col(Attempt.state) == AttemptState.PENDING.value,
    )
    .values(
        state=AttemptState.SENDING.value,
        claim_token=bindparam("token"),
        claimed_at=bindparam("now", type_=UTCDateTime()),
        started_at=func.coalesce(Attempt.started_at, bindparam("now", type_=UTCDateTime())),
        tries=Attempt.tries + 1,
    )
    .returning(Attempt)
)
_CLAIM_OPTIONS = {**NO_SYNC, "populate_existing": True}


def claim_many(
    session: Session, attempt_ids: list[str], token: str, now: datetime
) -> list[Attempt]:
    """Compare-and-set ``pending -> sending`` for each id; returns the attempts claimed,
    read back by the same statement (``RETURNING``)."""
    params = {"ids": attempt_ids, "token": token, "now": now}
    result = session.execute(_CLAIM, params, execution_options=_CLAIM_OPTIONS)
    return list(result.scalars())


_TAKEN = (
    update(Attempt)
    .where(
        col(Attempt.id).in_(bindparam("ids", expanding=True)),
        col(Attempt.state) == AttemptState.PENDING.value,
    )
    .values(published_at=bindparam("now", type_=UTCDateTime()))
)


def mark_taken(rt: Runtime, attempt_ids: list[str], now: datetime | None = None) -> int:
    """A worker took these attempts' group: their doorbell is not lost, so the sweep's
    ``republish_after`` counts from now. Without it, a backlog held in a worker's
    reserved groups (the queue itself empty) looked lost and was rung again."""
    with unit_of_work(rt, now) as work:
        params = {"ids": attempt_ids, "now": work.now}
        marked: int = work.session.execute(_TAKEN, params, execution_options=NO_SYNC).rowcount  # type: ignore[attr-defined]
    return marked


def claim(rt: Runtime, attempt_id: str, now: datetime) -> str | None:
    """Claim one attempt, committed. Returns the claim token or None."""
    token = str(uuid.uuid4())
    with unit_of_work(rt, now) as work:
        claimed = claim_many(work.session, [attempt_id], token, work.now)
    return token if claimed else None


def claim_round(rt: Runtime, requests: list[tuple[str, datetime | None]]) -> list[Claimed]:
    """Claim and prepare the attempts of one round in one transaction."""
    now = next((at for _, at in requests if at is not None), None)
    ids = [attempt_id for attempt_id, _ in requests]
    token = str(uuid.uuid4())
    with unit_of_work(rt, now) as work:
        claimed = claim_many(work.session, list(dict.fromkeys(ids)), token, work.now)
        prepared = prepare(rt, work, claimed, token)
    return [
        Claimed(token, prepared.pop(attempt_id))
        if attempt_id in prepared
        else Claimed(None, "not_claimed")
        for attempt_id in ids
    ]


def prepare(rt: Runtime, work: Work, attempts: list[Attempt], token: str) -> dict[str, Prepared]:
    """Load what the sends need; pick the providers; name the first on each attempt."""
    if not attempts:
        return {}
    session, now = work.session, work.now
    notifications = by_id(session, Notification, {a.notification_id for a in attempts})
    contacts = by_id(session, ContactPoint, {a.contact_id for a in attempts if a.contact_id})
    _start(session, [n for n in notifications.values() if _open(n, now)])
    prepared: dict[str, Prepared] = {}
    calling: dict[str, list[str]] = defaultdict(list)
    for attempt in attempts:
        notification = notifications[attempt.notification_id]
        contact = contacts.get(attempt.contact_id) if attempt.contact_id else None
        if not _open(notification, now):
            apply(work, notification, attempt, cancelled(attempt, now), source="worker")
            prepared[attempt.id] = "cancelled"
        elif contact is None or contact.status != "active":
            transition = failed(attempt, now, "contact_unavailable")
            apply(work, notification, attempt, transition, source="worker")
            prepared[attempt.id] = "failed"
        elif refused := refusal(notification.content.get(attempt.channel)):
            # e.g. an SMS over its step's max_segments: never sent, never billed
            apply(work, notification, attempt, failed(attempt, now, refused), source="worker")
            prepared[attempt.id] = "failed"
        else:
            open_ = window_open(contact, Channel(attempt.channel), now)
            message = build_message(rt, notification, attempt, contact.address, window_open=open_)
            candidates = rt.router.candidates(
                Channel(attempt.channel), message.recipient, now, seed=message.idempotency_key
            )
            if candidates:
                calling[candidates[0].name].append(attempt.id)
            prepared[attempt.id] = (message, candidates)
    for provider, ids in calling.items():
        name_provider(session, ids, token, provider)
    return prepared


def _open(notification: Notification, now: datetime) -> bool:
    return notification.state in OPEN_STATES and notification.expires_at > now


#: ``SELECT <model> WHERE id IN (…)``, built once per model.
_BY_ID: dict[Any, Any] = {}


def by_id(session: Session, model: Any, ids: Collection[Any]) -> dict[Any, Any]:
    """The rows of ``model`` with these ids, by id, in one query."""
    if not ids:
        return {}
    statement = _BY_ID.get(model)
    if statement is None:
        where = col(model.id).in_(bindparam("ids", expanding=True))
        statement = _BY_ID.setdefault(model, select(model).where(where))
    return {row.id: row for row in session.exec(statement, params={"ids": list(ids)})}


_ATTEMPT: Any = Attempt.__table__  # type: ignore[attr-defined]
_NOTIFICATION: Any = Notification.__table__  # type: ignore[attr-defined]
#: The round's statements, built once (Core, bound parameters; the id lists expand).
_START = (
    update(_NOTIFICATION)
    .where(
        _NOTIFICATION.c.id.in_(bindparam("ids", expanding=True)),
        _NOTIFICATION.c.state == NotificationState.ACCEPTED.value,
    )
    .values(state=NotificationState.IN_PROGRESS.value)
    .returning(_NOTIFICATION.c.id)
)
_NAME_PROVIDER = (
    update(_ATTEMPT)
    .where(
        _ATTEMPT.c.id.in_(bindparam("ids", expanding=True)),
        _ATTEMPT.c.claim_token == bindparam("token"),
    )
    .values(provider=bindparam("provider"))
)


def _start(session: Session, notifications: list[Notification]) -> None:
    """``accepted -> in_progress`` for the notifications whose first attempt is claimed."""
    waiting = {n.id: n for n in notifications if n.state == NotificationState.ACCEPTED}
    if not waiting:
        return
    for (notification_id,) in session.execute(_START, {"ids": list(waiting)}):
        set_committed_value(waiting[notification_id], "state", NotificationState.IN_PROGRESS.value)


def name_provider(session: Session, attempt_ids: list[str], token: str, provider: str) -> None:
    """Record which provider is being called, so an unknown outcome names who may have billed."""
    session.execute(_NAME_PROVIDER, {"ids": attempt_ids, "token": token, "provider": provider})


def _tracks_links(
    rt: Runtime, notification: Notification, attempt: Attempt, text: str, html: str | None
) -> bool:
    """A URL to track (one substring test when there is none) on a step that tracks: the
    step of the notification's A/B variant, if it has one."""
    if "://" not in text and "://" not in (html or ""):
        return False
    cascade = rt.cascades.get(attempt.cascade or "")
    if cascade is None:
        return True
    return cascade.as_assigned(notification.variant).tracks_links(Channel(attempt.channel))


def build_message(
    rt: Runtime,
    notification: Notification,
    attempt: Attempt,
    address: str,
    *,
    window_open: bool = False,
) -> Message:
    content: dict[str, Any] = notification.content.get(attempt.channel, {})
    template = content.get("template")
    secret = rt.settings.effective_receipt_secret
    data = {
        "notification_id": notification.id,
        "attempt_id": attempt.id,
        "receipt_token": receipt_token(secret, attempt.id),
        "ack_url": f"{rt.settings.public_url.rstrip('/')}/v1/receipts",
    }
    text, html = content.get("text") or "", content.get("html")
    if rt.settings.link_tracking and _tracks_links(rt, notification, attempt, text, html):
        text, html = rewrite(
            text, html, base=rt.settings.public_url, secret=secret, attempt_id=attempt.id
        )
    return Message(
        recipient=address,
        text=text,
        title=content.get("title"),
        html=html,
        template=TemplateRef(
            template["name"],
            template["language"],
            tuple(template["params"]),
            template.get("ack_button"),  # absent in content stored before it existed
        )
        if template
        else None,
        reference=attempt.id,
        idempotency_key=attempt.idempotency_key,
        data=data if attempt.channel == Channel.PUSH else {},
        window_open=window_open,
    )
