"""Tracked links: ``GET /l/{token}`` answers 302 to the link's original URL.

No authentication: the token is the credential (:mod:`dispatcher.links`). A forged,
truncated, overlong or unknown token is a 404 problem (its MAC is checked before any
lookup), never a redirect (no open redirect). The access log prints only the path, whose
token holds ids, not the target URL.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from dispatcher.api.deps import RuntimeDep
from dispatcher.api.openapi import problems
from dispatcher.api.problems import Problem
from dispatcher.clicks import follow

router = APIRouter(tags=["links"])

#: A redirect that must reach us every time (a cached one would hide the click) and must
#: not tell the target which message it came from.
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}


@router.get(
    "/l/{token}",
    status_code=302,
    response_class=RedirectResponse,
    responses={302: {"description": "Redirect to the link's original URL"}, **problems(404, 422)},
)
def follow_link(token: str, request: Request, runtime: RuntimeDep) -> Response:
    """Follow a tracked link: a person's click is recorded, a preview fetch is not."""
    followed = follow(
        runtime, token, method=request.method, user_agent=request.headers.get("user-agent")
    )
    if followed is None:
        raise Problem(404, "Not found", "no such link")
    return RedirectResponse(followed.target, status_code=302, headers=_HEADERS)


# A HEAD (a scanner's or link checker's probe) gets the same redirect and counts nothing.
router.add_api_route(
    "/l/{token}", follow_link, methods=["HEAD"], include_in_schema=False, status_code=302
)
