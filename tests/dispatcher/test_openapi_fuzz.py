"""Property-based run over ``/openapi.json``: every operation, valid and invalid input, no 5xx.

schemathesis generates requests from the published schema (positive: what the schema
allows; negative: what it forbids), sends them authenticated with the test API key to
the real app on the real database, and checks that no answer is a server error, that
every status and media type answered is documented for the operation, and that
answers match their schema. Sized to a few seconds per operation.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dispatcher.api.app import create_app
from dispatcher.runtime import Runtime
from tests.conftest import AUTH

EXAMPLES = 15  #: per operation and generation mode: ~40 s per backend on 2 cores

#: No 5xx; every answer's status and media type documented for its operation, and its
#: body matching the documented schema (errors: problem JSON).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def fuzz(operation: Any, mode: GenerationMode, **fixed: Any) -> str | None:
    """Run one operation in one mode; the first failure (shrunk) as text, else None."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy(generation_mode=mode, **fixed))
        response = case.call(headers=AUTH)
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        return None  # nothing invalid can be sent (e.g. only free-text path parameters)
    except (Exception, FailureGroup) as exc:
        return f"{operation.label} [{mode.value}]: {exc}"
    return None


def modes(openapi: dict[str, Any], operation: Any) -> list[GenerationMode]:
    """Negative data only where the schema forbids something: a body, or a constrained
    parameter (free-text path parameters such as a provider name have no invalid value)."""
    spec = openapi["paths"][operation.path][operation.method.lower()]
    constrained = "requestBody" in spec or any(
        set(p.get("schema", {})) - {"type", "title"} or p["in"] != "path"
        for p in spec.get("parameters", [])
    )
    if constrained:
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]


@pytest.mark.timeout(600)
def test_no_operation_answers_a_server_error(runtime: Runtime):
    """Every operation, positive and negative data: 0 x 5xx; statuses, media types and
    bodies as documented."""
    app = create_app(runtime)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
    # /readyz answers 503 by design while no worker or beat runs (tests/e2e/test_readiness.py).
    operations = [o for o in operations if o.path != "/readyz"]
    assert len(operations) >= 14
    failures = [
        failure
        for operation in operations
        for mode in modes(app.openapi(), operation)
        if (failure := fuzz(operation, mode)) is not None
    ]
    assert failures == [], "\n\n".join(failures)
