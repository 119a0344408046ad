"""The registry, the providers' config models and the README's provider table agree."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from providers import REGISTRY
from providers.base import Channel, Provider, ProviderConfig

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_rows() -> dict[str, str]:
    """provider name -> channel, from the README's provider table."""
    rows = re.findall(r"^\| `([a-z]+)`[^|]*\| ([a-z]+) \|", README.read_text(), flags=re.MULTILINE)
    return dict(rows)


def test_readme_table_lists_every_provider_with_its_channel():
    """Each registered provider has a README row naming its channel, and no row is stale."""
    assert readme_rows() == {name: cls.channel.value for name, cls in REGISTRY.items()}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_provider_class_shape(name: str):
    """Name, channel and config model are declared; base_url is configurable; cost too."""
    cls = REGISTRY[name]
    assert cls.name == name
    assert isinstance(cls.channel, Channel)
    assert issubclass(cls.config_model, ProviderConfig)
    assert {"base_url", "cost", "timeout"} <= set(cls.config_model.model_fields)
    assert callable(getattr(cls, "send", None))


def test_webhook_providers_have_handle():
    """Providers whose README row names a callback implement handle()."""
    with_callbacks = {"telegram", "whatsapp", "viber", "vk", "mailgun", "twilio", "smsru"}
    assert {name for name, cls in REGISTRY.items() if hasattr(cls, "handle")} == with_callbacks


def test_built_provider_satisfies_the_protocol():
    """A constructed provider is a Provider (structural check)."""
    from tests.simulators import twilio

    config = REGISTRY["twilio"].config_model.model_validate(
        {"account_sid": twilio.ACCOUNT_SID, "auth_token": "x", "sender": "+15005550006"}
    )
    with httpx.Client() as client:
        assert isinstance(REGISTRY["twilio"](config, client), Provider)
