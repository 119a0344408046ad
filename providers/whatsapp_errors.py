"""WhatsApp Cloud API errors: Graph's ``error.code`` decides what the dispatcher does next.

Meta recommends classifying on the code, and only then on the HTTP status
(PROVIDERS.md §5); 503 is "not sent" whatever the code says.
"""

from __future__ import annotations

from typing import Any

import httpx

from providers.errors import (
    InvalidAddressError,
    NotSentError,
    ProviderConfigError,
    ProviderError,
    RejectedError,
    TemplateRequiredError,
    UnknownOutcomeError,
)
from providers.http import UNAVAILABLE, raise_for_status_class, retry_after_seconds

#: Graph error codes by what the dispatcher does next (PROVIDERS.md §5).
NOT_SENT_CODES = frozenset({2, 4, 80007, 130429, 131056, 133004})
UNKNOWN_CODES = frozenset({1, 131000})
INVALID_ADDRESS_CODES = frozenset({131026})
REJECTED_CODES = frozenset({131021, 131049, 131050})
#: Re-engagement: free-form text outside the 24-hour window.
TEMPLATE_REQUIRED_CODE = 131047
CONFIG_CODES = frozenset(
    {0, 10, 100, 190, 368, 131008, 131009, 131030, 131031, 131042, 131048, 131051, 133010}
    | {132000, 132001, 132005, 132007, 132012, 132015, 132016}
    | set(range(200, 300))
)


def graph_error(
    error: dict[str, Any], response: httpx.Response, *, template: bool
) -> ProviderError:
    """The provider error for a Graph ``error`` object (classified on ``error.code``)."""
    raw = error.get("code")
    code = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
    label = str(code if code is not None else response.status_code)
    title = f"whatsapp: Graph error {label}"
    # 503 is "not sent" whatever the code says: the one rule of providers/http.py.
    if code in NOT_SENT_CODES or response.status_code in (429, UNAVAILABLE):
        return NotSentError(
            f"{title} (throttled or unavailable)",
            code=label,
            retry_after=retry_after_seconds(response),
        )
    if code in UNKNOWN_CODES:
        return UnknownOutcomeError(f"{title} (may have been processed)", code=label)
    if code in INVALID_ADDRESS_CODES:
        return InvalidAddressError(f"{title} (recipient cannot be reached)", code=label)
    if code == TEMPLATE_REQUIRED_CODE and template:
        return ProviderConfigError(f"{title} (template refused as re-engagement)", code=label)
    if code == TEMPLATE_REQUIRED_CODE:
        return TemplateRequiredError(f"{title} (not sent: outside the 24-hour window)")
    if code in REJECTED_CODES:
        return RejectedError(f"{title} (message refused)", code=label)
    if code in CONFIG_CODES:
        return ProviderConfigError(f"{title} (credentials, account or template)", code=label)
    try:
        raise_for_status_class("whatsapp", response, code=label)
    except ProviderError as exc:
        return exc
    return UnknownOutcomeError(f"{title} (HTTP {response.status_code})", code=label)
