"""The OpenAPI document a client can trust, and its pages served from local files.

* Security: ``HTTPBearer`` (see :mod:`dispatcher.api.deps`), so Swagger's "Authorize"
  and "Try it out" send the API key.
* Errors: every error status a route can answer is documented as
  ``application/problem+json`` with the :class:`ProblemDetails` schema and an example
  (:func:`problems`); FastAPI's ``HTTPValidationError`` never appears, since no answer
  has that shape.
* Operation ids are the route functions' names: readable, unique (a test checks).
* Swagger UI and ReDoc load their scripts from this server (the ``fastapi-offline``
  package ships them), so ``/docs`` works without the internet.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from dispatcher.api.problems import MEDIA_TYPE, RETRY_AFTER


class FieldProblem(BaseModel):
    field: str = Field(examples=["contacts[0].address"])  #: the field at fault, as a path
    message: str = Field(examples=["not a valid phone number"])


class ProblemDetails(BaseModel):
    """An RFC 9457 problem: every error of this API has this shape."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None  #: the request path
    errors: list[FieldProblem] | None = None  #: one per field at fault (422, 409, 400)


#: What each status means here, and an example body.
_STATUSES: dict[int, tuple[str, dict[str, Any]]] = {
    400: (
        "The body could not be read (not JSON, not UTF-8, or a callback of the wrong shape)",
        {"title": "There was an error parsing the body"},
    ),
    401: (
        "No valid API key: send `Authorization: Bearer <key>`",
        {"title": "Unauthorized", "detail": "send Authorization: Bearer <api key>"},
    ),
    403: (
        "The provider's signature or secret is wrong, or the callback was replayed",
        {"title": "Invalid signature", "detail": "twilio: signature mismatch"},
    ),
    404: ("No such resource", {"title": "Not found", "detail": "no notification 3f2c…"}),
    405: (
        "This provider takes no callback of this method (e.g. no GET handshake)",
        {"title": "Method not allowed"},
    ),
    409: (
        "Conflict: already finished, or an Idempotency-Key reused with another body",
        {"title": "Already finished", "detail": "the notification is delivered"},
    ),
    413: (
        "The request body is over the limit (`CASCADE_MAX_BODY_BYTES`)",
        {"title": "Request body too large", "detail": "the limit is 65536 bytes"},
    ),
    422: (
        "Invalid request: `errors` names each field at fault",
        {
            "title": "Invalid request",
            "detail": "ttl: must be between 1s and 30d",
            "errors": [{"field": "ttl", "message": "must be between 1s and 30d"}],
        },
    ),
    503: (
        "The database is unavailable or busy: retry the same request after `Retry-After`",
        {"title": "Service unavailable", "detail": "the database is unavailable or busy"},
    ),
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "example": 'Bearer realm="cascade"'}},
    503: {"Retry-After": {"schema": {"type": "integer"}, "example": RETRY_AFTER}},
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status as problem JSON with its example."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, example = _STATUSES[status]
        content = {
            "schema": {"$ref": "#/components/schemas/ProblemDetails"},
            "example": {"type": "about:blank", "status": status, **example},
        }
        responses[status] = {"description": description, "content": {MEDIA_TYPE: content}}
        if status in _HEADERS:
            responses[status]["headers"] = _HEADERS[status]
    return responses


def operation_id(route: APIRoute) -> str:
    """The route function's name: ``send_notification``, ``get_customer``, ..."""
    return route.name


DESCRIPTION = """\
Send a notification through a cascade of channels (push → messengers → e-mail → SMS):
each step waits for its confirmation for its own timeout, and only then moves on.

**Authentication**: `Authorization: Bearer <API key>` on every `/v1` route except
`/v1/webhooks/{provider}` (the provider's signature) and `/v1/receipts` (an API key or
the push's `receipt_token`). Use **Authorize** above to try the routes here.

**Errors** are RFC 9457 problem JSON (`application/problem+json`); validation errors
list each field at fault in `errors`. A 503 carries `Retry-After`: send the same request
again (with the same `Idempotency-Key` for sends).
"""


def install(app: FastAPI) -> None:
    """Generate the document once, with the problem schemas in its components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=DESCRIPTION,
            routes=app.routes,
        )
        definitions = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(definitions.pop("$defs", {}))
        components["ProblemDetails"] = definitions
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
