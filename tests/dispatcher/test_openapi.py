"""``/openapi.json`` is a document clients can trust, and ``/docs`` works offline.

The document is validated with openapi-spec-validator; each documented error is
provoked for real on the real API (both databases) and must be documented for that
operation as problem JSON of the documented shape. schemathesis
(``test_openapi_fuzz.py``) checks the same over generated input.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from dispatcher import broadcast_schemas, customer_schemas, schemas
from dispatcher.api.openapi import ProblemDetails
from tests.conftest import AUTH

CUSTOMER = {"contacts": [{"channel": "sms", "address": "+14155552671"}]}
SEND = {"customer_id": "o1", "cascade": "basic", "content": {"text": "x"}}
NO_KEY = {"Authorization": ""}
UNKNOWN = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(name="spec")
def _spec(api: TestClient) -> dict[str, Any]:
    response = api.get("/openapi.json", headers=NO_KEY)
    assert response.status_code == 200
    return dict(response.json())


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]


def test_document_is_valid_openapi(spec: dict[str, Any]):
    """openapi-spec-validator accepts it; FastAPI's HTTPValidationError is gone."""
    validate(spec)
    assert "HTTPValidationError" not in str(spec)
    assert spec["components"]["securitySchemes"] == {
        "HTTPBearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from CASCADE_API_KEYS",
        }
    }


def test_operation_ids_are_unique_and_readable(spec: dict[str, Any]):
    """Client generators need one id per operation: the webhook's GET and POST differ."""
    ids = [operation["operationId"] for _, _, operation in operations(spec)]
    assert len(ids) == len(set(ids)) >= 18
    assert all(re.fullmatch(r"[a-z][a-z_]+", i) for i in ids), ids
    assert {"send_notification", "receive_webhook", "webhook_handshake"} <= set(ids)


def test_security_and_errors_are_documented(spec: dict[str, Any]):
    """Every /v1 route but the webhooks needs the bearer key (receipts: or a token); every
    error status is problem JSON with the ProblemDetails schema and an example."""
    for path, method, operation in operations(spec):
        security = operation.get("security")
        if path.startswith("/v1/webhooks") or not path.startswith("/v1"):
            assert security is None, path
        elif path == "/v1/receipts":
            assert security == [{"HTTPBearer": []}, {}]
        else:
            assert security == [{"HTTPBearer": []}], (method, path)
            assert "401" in operation["responses"], (method, path)
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            (media,) = response["content"].items()
            assert media[0] == "application/problem+json", (method, path, status)
            assert media[1]["schema"] == {"$ref": "#/components/schemas/ProblemDetails"}
            ProblemDetails.model_validate(media[1]["example"])
        if "requestBody" in operation or operation.get("parameters"):
            assert "422" in operation["responses"], (method, path)


@pytest.mark.parametrize(
    "model",
    [
        schemas.NotificationIn,
        customer_schemas.CustomerIn,
        customer_schemas.PreferencesPatch,
        schemas.ReceiptIn,
        broadcast_schemas.BroadcastIn,
        schemas.NotificationAccepted,
    ],
)
def test_examples_are_valid(model: type[Any]):
    """Every example in the document is accepted by the model it illustrates."""
    examples = model.model_json_schema()["examples"]
    assert examples
    for example in examples:
        model.model_validate(example)


#: (method, concrete path, documented path, request, expected status)
REAL_ERRORS: list[tuple[str, str, str, dict[str, Any], int]] = [
    ("post", "/v1/notifications", "/v1/notifications", {"json": SEND, "headers": NO_KEY}, 401),
    ("post", "/v1/notifications", "/v1/notifications", {"json": {**SEND, "ttl": 0}}, 422),
    ("post", "/v1/notifications", "/v1/notifications", {"content": b"x" * 70_000}, 413),
    (
        "post",
        "/v1/notifications",
        "/v1/notifications",
        {"json": {**SEND, "data": {"v": 2}}, "headers": {**AUTH, "Idempotency-Key": "k"}},
        409,
    ),
    ("get", f"/v1/notifications/{UNKNOWN}", "/v1/notifications/{notification_id}", {}, 404),
    ("get", "/v1/notifications/a%20b", "/v1/notifications/{notification_id}", {}, 422),
    (
        "post",
        f"/v1/notifications/{UNKNOWN}/cancel",
        "/v1/notifications/{notification_id}/cancel",
        {},
        404,
    ),
    ("get", "/v1/customers/nobody", "/v1/customers/{customer_id}", {}, 404),
    ("put", "/v1/customers/o2", "/v1/customers/{customer_id}", {"json": {"timezone": "Mars"}}, 422),
    (
        "patch",
        "/v1/customers/nobody/preferences",
        "/v1/customers/{customer_id}/preferences",
        {"json": {}},
        404,
    ),
    ("get", "/v1/customers/nobody/history", "/v1/customers/{customer_id}/history", {}, 404),
    (
        "post",
        "/v1/receipts",
        "/v1/receipts",
        {"json": {"attempt_id": UNKNOWN, "status": "read"}, "headers": NO_KEY},
        401,
    ),
    (
        "post",
        "/v1/receipts",
        "/v1/receipts",
        {"json": {"attempt_id": UNKNOWN, "status": "read"}},
        404,
    ),
    ("post", "/v1/webhooks/nope", "/v1/webhooks/{provider}", {"content": b"{}"}, 404),
    ("get", "/v1/cascades", "/v1/cascades", {"headers": NO_KEY}, 401),
    ("get", "/v1/cascades/nope", "/v1/cascades/{name}", {}, 404),
    ("get", "/v1/stats?since=soon", "/v1/stats", {}, 422),
    ("get", f"/v1/broadcasts/{UNKNOWN}", "/v1/broadcasts/{broadcast_id}", {}, 404),
    ("get", "/readyz", "/readyz", {}, 503),  # no worker, no beat here
]


def test_real_errors_are_documented_problems(api: TestClient, spec: dict[str, Any]):
    """Each error provoked for real is documented for its operation and has its shape."""
    api.put("/v1/customers/o1", json=CUSTOMER)
    first = api.post("/v1/notifications", json=SEND, headers={**AUTH, "Idempotency-Key": "k"})
    assert first.status_code == 202
    for method, path, documented, request, status in REAL_ERRORS:
        response = api.request(method, path, **request)
        assert response.status_code == status, (method, path, response.text)
        assert str(status) in spec["paths"][documented][method]["responses"], (method, path)
        assert response.headers["content-type"] == "application/problem+json"
        problem = ProblemDetails.model_validate(response.json())
        assert problem.status == status


def test_docs_pages_load_their_assets_from_this_server(api: TestClient):
    """Swagger UI and ReDoc reference only local scripts, and those are served."""
    for page in ("/docs", "/redoc"):
        html = api.get(page).text
        external = re.findall(r"""(?:src|href)=["'](https?://[^"']+)""", html)
        assert external == [], (page, external)
        assets = re.findall(r"""["'](/docs-assets/[^"']+)""", html)
        assert assets, page
        for asset in assets:
            response = api.get(asset)
            assert response.status_code == 200, asset
            assert len(response.content) > 1000, asset
    assert "persistAuthorization" in api.get("/docs").text
