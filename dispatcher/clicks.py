"""A tracked link followed: verify its token, find its target, record the click.

The click is applied like a receipt, through the one state-change path
(:func:`dispatcher.lifecycle.apply` with :func:`dispatcher.receipt_decisions.on_click`), in the
attempt's row lock: the first counted click confirms, later ones are only recorded.
Previews and scanners (:mod:`dispatcher.previews`) get their redirect and write nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from sqlmodel import Session

from dispatcher.lifecycle import apply
from dispatcher.links import find_links, link_key, read_token
from dispatcher.models import Attempt, Notification
from dispatcher.previews import not_a_click
from dispatcher.receipt_decisions import NOT_YET_SENT, on_click
from dispatcher.receipt_tables import LinkClick, room_for_click
from dispatcher.runtime import Runtime
from dispatcher.states import OPEN_STATES, AttemptState
from dispatcher.work import Work, unit_of_work

#: History's source of a click.
SOURCE = "link"


@dataclass(frozen=True, slots=True)
class Followed:
    """Where to send the visitor, and what the visit counted as."""

    target: str
    outcome: str  #: finished | applied | late | counted | or why it is not a click


def page_of(url: str) -> str:
    """The target without query and fragment, as the stats group it."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))[:512]


def _target(session: Session, attempt: Attempt, index: int, own: str) -> str | None:
    notification = session.get(Notification, attempt.notification_id)
    part = (notification.content if notification else {}).get(attempt.channel) or {}
    links = find_links(part.get("text"), part.get("html"), own)
    return links[index] if index < len(links) else None


def _sent_at(attempt: Attempt) -> object:
    """When the message left: a click before the send is recorded counts as too soon."""
    if AttemptState(attempt.state) in NOT_YET_SENT:
        return None
    return attempt.sent_at or attempt.claimed_at  # unknown outcome: the claim's time


def follow(rt: Runtime, token: str, *, method: str, user_agent: str | None) -> Followed | None:
    """The target of a genuine token, after recording the click; None for a forged or
    unknown token (nothing is read beyond the MAC check, nothing is written)."""
    found = read_token(link_key(rt.settings.effective_receipt_secret), token)
    if found is None:
        return None
    attempt_id, index = found
    own = rt.settings.public_url.rstrip("/")
    with unit_of_work(rt) as work:
        session, now = work.session, work.now
        attempt = session.get(Attempt, attempt_id)
        target = _target(session, attempt, index, own) if attempt is not None else None
        if attempt is None or target is None:
            return None
        reason = not_a_click(method, user_agent, _sent_at(attempt), now)  # type: ignore[arg-type]
        if reason is not None:
            return Followed(target, reason)
        # Locked (PostgreSQL) against a receipt or another click applied at the same time,
        # so the clicks counted next are all the committed ones.
        session.refresh(attempt, with_for_update=True)
        notification = session.get(Notification, attempt.notification_id)
        assert notification is not None
        for _ in range(3):  # a lost compare-and-set means the attempt moved: decide again
            outcome = count_click(work, notification, attempt, index, page_of(target), SOURCE)
            if outcome is not None:
                return Followed(target, outcome)
            session.refresh(attempt)
            session.refresh(notification)
        return Followed(target, "moved")  # the visitor still gets the page


def count_click(
    work: Work, notification: Notification, attempt: Attempt, link: int, page: str, source: str
) -> str | None:
    """Record a click on ``attempt`` (locked by the caller): its transition (the first
    click confirms) and its row, or ``over_limit`` past ``MAX_CLICKS``. None when the
    compare-and-set lost (the attempt moved): the caller reads it again and retries.

    The one path of a link followed and of a tap the app reports."""
    if not room_for_click(work.session, attempt):
        return "over_limit"
    transition = on_click(attempt, link, work.now, open_=notification.state in OPEN_STATES)
    if not apply(work, notification, attempt, transition, source=source):
        return None
    first = transition.outcome != "counted"
    work.session.add(LinkClick.of(attempt, link, page, first=first, at=work.now))
    return transition.outcome
