"""Firebase Cloud Messaging, HTTP v1 API.

``POST {base_url}/v1/projects/{project_id}/messages:send`` with a Bearer token
from :mod:`providers.oauth`. FCM only says "accepted": delivery and read
receipts come from the app itself (``POST /v1/receipts`` with the receipt token
carried in ``data``), so this provider has no webhook.

Errors are classified on ``details[].errorCode`` first, then the google.rpc
``status``, then the HTTP status, as firebase-admin does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Self

import httpx
from pydantic import SecretStr, model_validator

from providers.apns import is_device_token
from providers.base import Channel, Message, ProviderConfig, SendResult
from providers.errors import (
    InvalidAddressError,
    NotSentError,
    ProviderConfigError,
    ProviderError,
    UnknownOutcomeError,
)
from providers.http import (
    DEFAULT_TIMEOUT,
    UNAVAILABLE,
    map_http_errors,
    quick_retry,
    retry_after_seconds,
    server_error,
)
from providers.oauth import AccessTokens, ServiceAccount

#: The OAuth scope FCM sends need.
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"

#: What each FCM error code (or canonical status) means for the dispatcher.
_ERRORS: dict[str, type[ProviderError]] = {
    "UNREGISTERED": InvalidAddressError,
    "SENDER_ID_MISMATCH": InvalidAddressError,
    "QUOTA_EXCEEDED": NotSentError,
    "RESOURCE_EXHAUSTED": NotSentError,
    "UNAVAILABLE": NotSentError,
    "INTERNAL": UnknownOutcomeError,  # may have been accepted: a resend may duplicate
    "THIRD_PARTY_AUTH_ERROR": ProviderConfigError,
    "APNS_AUTH_ERROR": ProviderConfigError,
    "PERMISSION_DENIED": ProviderConfigError,
    "UNAUTHENTICATED": ProviderConfigError,
}


class FcmConfig(ProviderConfig):
    """FCM settings: a service-account key given inline or as a file."""

    base_url: str = "https://fcm.googleapis.com"
    service_account_json: SecretStr | None = None  #: the key file's JSON text
    service_account_file: Path | None = None  #: or a path to it
    project_id: str | None = None  #: defaults to the key's ``project_id``
    token_uri: str | None = None  #: defaults to the key's ``token_uri``

    @model_validator(mode="after")
    def _one_key(self) -> Self:
        if (self.service_account_json is None) == (self.service_account_file is None):
            raise ValueError("set exactly one of service_account_json and service_account_file")
        return self


class FcmProvider:
    """Sends push notifications to FCM registration tokens."""

    name: ClassVar[str] = "fcm"
    channel: ClassVar[Channel] = Channel.PUSH
    config_model: ClassVar[type[ProviderConfig]] = FcmConfig

    def __init__(
        self, config: FcmConfig, client: httpx.Client, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self._client = client
        account = ServiceAccount.from_json(_key_text(config))
        project = config.project_id or account.project_id
        if not project:
            raise ProviderConfigError("fcm: no project_id in config or key", code="no_project")
        self._url = f"{config.base_url.rstrip('/')}/v1/projects/{project}/messages:send"
        self._timeout = httpx.Timeout(
            config.timeout, connect=min(DEFAULT_TIMEOUT.connect or 3.0, config.timeout)
        )
        self._tokens = AccessTokens(
            account,
            client,
            scope=SCOPE,
            token_uri=config.token_uri or account.token_uri,
            timeout=self._timeout,
            clock=clock,
        )

    def accepts(self, recipient: str) -> bool:
        """Registration tokens only: not Web Push subscriptions (JSON objects), nor APNs
        device tokens (plain hex), which FCM would refuse as invalid registration tokens."""
        return not recipient.lstrip().startswith("{") and not is_device_token(recipient)

    def send(self, message: Message) -> SendResult:
        if not message.recipient.strip():
            raise InvalidAddressError("fcm: empty registration token", code="empty_token")
        return self._send(_payload(message))

    @quick_retry()
    def _send(self, payload: dict[str, Any]) -> SendResult:
        token = self._tokens.get()
        response = self._post(payload, token)
        if _token_refused(response):
            # Our access token expired or was revoked early: the send was refused,
            # so one retry with a fresh token cannot duplicate it.
            self._tokens.invalidate(token)
            response = self._post(payload, self._tokens.get())
        if response.is_success:
            name = _error_body(response).get("name") if response.content else None
            if not isinstance(name, str) or not name:
                raise UnknownOutcomeError("fcm: 2xx without a message name", code="no_name")
            return SendResult(provider_message_id=name)
        raise _error(response)

    def _post(self, payload: dict[str, Any], token: str) -> httpx.Response:
        with map_http_errors(self.name):
            return self._client.post(
                self._url,
                json=payload,
                headers={"Authorization": f"Bearer {token}"},
                timeout=self._timeout,
            )


def _key_text(config: FcmConfig) -> str:
    if config.service_account_json is not None:
        return config.service_account_json.get_secret_value()
    assert config.service_account_file is not None  # the validator guarantees one
    try:
        return config.service_account_file.read_text(encoding="utf-8")
    except OSError:
        raise ProviderConfigError("fcm: cannot read service_account_file", code="bad_key") from None


def _payload(message: Message) -> dict[str, Any]:
    notification = {"title": message.title} if message.title else {}
    notification["body"] = message.text
    return {
        "message": {
            "token": message.recipient,
            "notification": notification,
            "data": {str(key): str(value) for key, value in message.data.items()},
            "android": {"priority": "high"},
        }
    }


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _details(response: httpx.Response) -> tuple[str | None, str | None, str, list[Any]]:
    """(FCM errorCode, canonical status, message, details) of a google.rpc error."""
    error = _error_body(response).get("error")
    if not isinstance(error, dict):
        return None, None, "", []
    raw = error.get("details")
    details: list[Any] = raw if isinstance(raw, list) else []
    codes = [
        d.get("errorCode") for d in details if isinstance(d, dict) and d.get("@type") == _FCM_ERROR
    ]
    fcm_code = next((c for c in codes if isinstance(c, str)), None)
    status = error.get("status") if isinstance(error.get("status"), str) else None
    return fcm_code, status, str(error.get("message") or ""), details


def _token_refused(response: httpx.Response) -> bool:
    if response.status_code != 401:
        return False
    fcm_code, status, _, _ = _details(response)
    return fcm_code is None and status in (None, "UNAUTHENTICATED")


def _bad_token(message: str, details: list[Any]) -> bool:
    """Whether an INVALID_ARGUMENT is about the registration token, not our payload."""
    text = message.lower()
    if "registration token" in text and ("not a valid" in text or "invalid" in text):
        return True
    for detail in details:
        if isinstance(detail, dict) and detail.get("@type") == _BAD_REQUEST:
            violations = detail.get("fieldViolations") or []
            if any(isinstance(v, dict) and v.get("field") == "message.token" for v in violations):
                return True
    return False


def _error(response: httpx.Response) -> ProviderError:
    fcm_code, status, text, details = _details(response)
    code = fcm_code or status or str(response.status_code)
    detail = f"fcm: HTTP {response.status_code} {code}"
    if response.status_code == UNAVAILABLE:
        kind: type[ProviderError] = NotSentError  # the one 503 rule, whatever the errorCode
    elif code == "INVALID_ARGUMENT":
        kind = InvalidAddressError if _bad_token(text, details) else ProviderConfigError
    elif code in _ERRORS:
        kind = _ERRORS[code]
    elif response.status_code == 429:
        kind = NotSentError
    elif (error := server_error("fcm", response, code=code)) is not None:
        return error
    else:  # recipient problems always carry an FCM errorCode; the rest is ours
        kind = ProviderConfigError
    if kind is NotSentError:
        return NotSentError(detail, code=code, retry_after=retry_after_seconds(response))
    return kind(detail, code=code)
