"""Provider errors, grouped by what the dispatcher does next.

* ProviderError
  + NotSentError           -> the provider provably did not take it: retry the same
  |                           attempt later (honour ``retry_after``), or the next provider
  + RejectedError          -> permanent for this recipient or message: attempt failed,
  |  |                         next cascade step now
  |  + InvalidAddressError -> ... and the contact is marked invalid
  |  + TemplateRequiredError -> not sent: outside the service window only a template
  |                            may go (WhatsApp 131047); the window is marked closed
  + ProviderConfigError    -> our credentials/account are wrong: attempt failed, operator
  |                           alerted, next provider or next step
  + UnknownOutcomeError    -> may have been accepted (read timeout after the body was
                              sent): attempt ``unknown``; never blindly resent on paid
                              channels; escalates at the step timeout without a receipt
* WebhookSignatureError    -> a callback without a valid signature: 401/403, no change
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base class for everything a provider raises."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code  #: the provider's own error code, for history and stats


class NotSentError(ProviderError):
    """The provider did not take the message; safe to try again."""

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after  #: seconds the provider asked us to wait


class RejectedError(ProviderError):
    """The provider will never accept this message for this recipient."""


class InvalidAddressError(RejectedError):
    """The address is gone (unregistered token, blocked bot, invalid number)."""


#: The code of :class:`TemplateRequiredError`, on attempts and failure receipts.
TEMPLATE_REQUIRED = "template_required"


class TemplateRequiredError(RejectedError):
    """Not sent: the customer has not written within the service window; use a template."""

    def __init__(self, message: str, *, code: str | None = TEMPLATE_REQUIRED) -> None:
        super().__init__(message, code=code)


class ProviderConfigError(ProviderError):
    """Our credentials or account are wrong; every recipient is affected."""


class UnknownOutcomeError(ProviderError):
    """The request may have been accepted; resending could duplicate it."""


class WebhookSignatureError(Exception):
    """A callback's signature is missing or wrong."""

    def __init__(self, message: str, *, status_code: int = 401) -> None:
        super().__init__(message)
        self.status_code = status_code
