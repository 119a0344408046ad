"""The stats pages: server-rendered HTML drawn with the vendored Chart.js, behind a login.

``/stats`` renders the very document ``GET /v1/stats`` answers (one function builds
both) and draws it; ``/stats/notifications/{id}`` draws one notification's timeline
across channels. Both need an API key: ``Authorization: Bearer`` or the session cookie
that ``/stats/login`` sets (:mod:`dispatcher.api.login`). Nothing is loaded from
elsewhere: scripts, styles and Chart.js are served from ``/stats/static``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import TypeAdapter

from dispatcher import timeline
from dispatcher.api import login
from dispatcher.api.deps import KeyRing, RuntimeDep, SessionDep
from dispatcher.api.problems import Problem
from dispatcher.api.stats import CascadeFilter, stats_document
from dispatcher.savings import Bucket

router = APIRouter(prefix="/stats", include_in_schema=False)
STATIC = Path(__file__).parent / "static"
#: Scripts and styles from this server only; the stats data is JSON, never executed.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
PERIODS = [("1 hour", "1h"), ("24 hours", "24h"), ("7 days", "7d"), ("30 days", "30d")]
DEFAULT_SINCE = "24h"
#: JSON as FastAPI writes an endpoint's ``dict[str, Any]`` answer (times end in ``Z``).
_JSON: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])
NotificationId = Annotated[str, Query(min_length=1, max_length=36, pattern=r"^[A-Za-z0-9\-]+$")]


def _when(value: Any) -> str:
    if value is None:
        return "—"
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _money(value: float | None) -> str:
    """At least two decimals, up to four: 0.10, 0.05, 0.0005."""
    if value is None:
        return "—"
    whole, _, fraction = f"{value:,.4f}".partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:g} s"


def _difference(value: dict[str, Any] | None) -> str:
    """A variant's confirmation rate minus the control's, in points, with its interval."""
    if value is None:
        return "—"
    points = [value[k] * 100 for k in ("confirmation_rate", "low", "high")]
    return "{:+.1f} pp [{:+.1f}, {:+.1f}]".format(*points)


templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True),
)
templates.filters.update(
    when=_when, money=_money, percent=_percent, seconds=_seconds, difference=_difference
)


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/stats/login?next={quote(here)}", status_code=303)


@router.get("/login")
def login_form(request: Request, runtime: RuntimeDep, next: str | None = None) -> Response:
    if login.viewer(request, runtime) is not None:
        return RedirectResponse(login.safe_next(next), status_code=303)
    return render("login.html", next=login.safe_next(next), logged_in=False)


@router.post("/login")
async def log_in(request: Request, runtime: RuntimeDep) -> Response:
    fields = await login.form_fields(request)
    ring: KeyRing = request.app.state.keyring
    key_id = ring.identify(fields.get("key", "").strip())
    target = login.safe_next(fields.get("next"))
    if key_id is None:
        error = {"field": "key", "message": "not a valid API key"}
        return render("login.html", 401, next=target, error=error, logged_in=False)
    response = RedirectResponse(target, status_code=303)
    login.set_session(response, request, login.session_token(ring, key_id, runtime.now()))
    return response


@router.post("/logout")
def log_out() -> Response:
    response = RedirectResponse("/stats/login", status_code=303)
    login.clear_session(response)
    return response


@router.get("")
def stats_page(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    since: str = DEFAULT_SINCE,
    until: datetime | None = None,
    cascade: CascadeFilter = None,
    bucket: Bucket | None = None,
) -> Response:
    """Funnel, time to read, where notifications finished, money saved, redundant sends."""
    if login.viewer(request, runtime) is None:
        return to_login(request)
    page: dict[str, Any] = {
        "since": since,
        "cascade": cascade or "",
        "cascades": sorted(runtime.cascades),
        "periods": PERIODS,
        "logged_in": True,
    }
    try:
        document = stats_document(
            runtime, session, since=since, until=until, cascade=cascade, bucket=bucket
        )
    except Problem as problem:
        return render("stats.html", problem.status, error=problem.errors[0], **page)
    recent = timeline.recent(
        session, since=document["since"], until=document["until"], cascade=cascade
    )
    encoded = _JSON.dump_python(document, mode="json")
    return render("stats.html", stats=document, document=encoded, recent=recent, **page)


@router.get("/find")
def find(request: Request, runtime: RuntimeDep, id: NotificationId) -> Response:
    if login.viewer(request, runtime) is None:
        return to_login(request)
    return RedirectResponse(f"/stats/notifications/{id}", status_code=303)


@router.get("/notifications/{notification_id}")
def timeline_page(
    notification_id: str, request: Request, runtime: RuntimeDep, session: SessionDep
) -> Response:
    """One notification across channels: a lane per attempt, a mark per history event."""
    if login.viewer(request, runtime) is None:
        return to_login(request)
    found = timeline.load(session, notification_id[:36])
    if found is None:
        return render("missing.html", 404, id=notification_id[:36], logged_in=True)
    return render(
        "timeline.html", t=found, document=_JSON.dump_python(found, mode="json"), logged_in=True
    )
