"""What a channel can confirm depends on its providers' settings, and the cascade check
names the setting that would make a refused signal possible."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from config.capabilities import Capabilities
from config.cascade_files import CascadeConfigError, load_file
from dispatcher.health import ProviderHealth
from dispatcher.routing import Router
from providers.base import CHANNEL_SIGNALS, Channel, Signal

TELEGRAM_READ = """\
name: tg
ttl: 1h
steps:
  - channel: telegram
    wait_for: read
    timeout: 2m
"""


def test_a_signal_a_provider_reports_is_accepted(tmp_path: Path):
    path = tmp_path / "tg.yaml"
    path.write_text(TELEGRAM_READ)
    reading = Capabilities({Channel.TELEGRAM: frozenset({Signal.SENT, Signal.READ})})
    assert load_file(path, reading).steps[0].wait_for is Signal.READ


def test_a_refused_signal_names_the_setting_that_enables_it(tmp_path: Path):
    path = tmp_path / "tg.yaml"
    path.write_text(TELEGRAM_READ)
    hint = "CASCADE_PROVIDERS__TELEGRAM__ACK_BUTTON is set"
    sending = Capabilities(
        {Channel.TELEGRAM: frozenset({Signal.SENT})}, {(Channel.TELEGRAM, Signal.READ): hint}
    )
    with pytest.raises(CascadeConfigError) as caught:
        load_file(path, sending)
    [problem] = caught.value.problems
    assert problem.field == "steps.0.wait_for"
    assert problem.message == f"telegram cannot report 'read' unless {hint} (it can report: sent)"


def test_a_set_of_channels_means_default_provider_settings(tmp_path: Path):
    given = Capabilities.coerce({Channel.SMS, Channel.PUSH})
    assert given is not None
    assert given.available() == {Channel.SMS, Channel.PUSH}
    assert given.signals[Channel.SMS] == CHANNEL_SIGNALS[Channel.SMS]
    assert not given.can(Channel.TELEGRAM, Signal.DELIVERED)


def telegram_router(**telegram: Any) -> Router:
    """A real router with Telegram configured as given (the receipt secret derives ack_key)."""
    return Router(
        channels={Channel.TELEGRAM: ["telegram"]},
        provider_settings={"telegram": {"token": "1:tg", "webhook_secret": "hook", **telegram}},
        sandbox=None,
        client=httpx.Client(),
        health=ProviderHealth(None),
        receipt_secret="receipt-secret",
    )


def test_router_with_the_telegram_button_accepts_waiting_for_a_press(tmp_path: Path):
    """Telegram's default settings carry the button: a step may wait for 'read'."""
    path = tmp_path / "tg.yaml"
    path.write_text(TELEGRAM_READ)
    router = telegram_router()
    try:
        capabilities = router.capabilities()
        assert capabilities.signals[Channel.TELEGRAM] == {Signal.SENT, Signal.READ}
        assert load_file(path, capabilities).steps[0].wait_for is Signal.READ
    finally:
        router.close()


def test_router_without_the_telegram_button_refuses_naming_the_setting(tmp_path: Path):
    """With ``ack_button`` off the check refuses 'read' and names the variable to set."""
    path = tmp_path / "tg.yaml"
    path.write_text(TELEGRAM_READ)
    router = telegram_router(ack_button=None)
    try:
        with pytest.raises(CascadeConfigError) as caught:
            load_file(path, router.capabilities())
    finally:
        router.close()
    [problem] = caught.value.problems
    assert problem.field == "steps.0.wait_for"
    assert problem.message == (
        "telegram cannot report 'read' unless CASCADE_PROVIDERS__TELEGRAM__ACK_BUTTON is set "
        "(it can report: sent)"
    )
