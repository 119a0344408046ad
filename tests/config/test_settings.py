"""Settings from the environment: nested variables, and one clear message when wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config.settings import DEV_API_KEY, SettingsError, load_settings
from providers.base import Channel


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith("CASCADE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults():
    """A fresh install: SQLite under the data dir, sandbox on, the local dev key."""
    settings = load_settings()
    assert settings.effective_database_url == f"sqlite:///{Path('data').resolve() / 'cascade.db'}"
    assert settings.sandbox.enabled
    assert settings.effective_api_keys == [DEV_API_KEY]


def test_environment_and_nesting(monkeypatch: pytest.MonkeyPatch):
    """Prefix, nested delimiter, comma-separated keys and JSON lists."""
    monkeypatch.setenv("CASCADE_API_KEYS", "first-key-123, second-key-456")
    monkeypatch.setenv("CASCADE_SANDBOX__CHANNELS__PUSH__READ_PROBABILITY", "0.25")
    monkeypatch.setenv("CASCADE_CHANNELS__SMS", '["twilio", "smsru:2"]')
    monkeypatch.setenv("CASCADE_PROVIDERS__TWILIO__ACCOUNT_SID", "AC1")
    settings = load_settings()
    assert settings.effective_api_keys == ["first-key-123", "second-key-456"]
    assert settings.sandbox.channels[Channel.PUSH].read_probability == 0.25
    assert settings.channels[Channel.SMS] == ["twilio", "smsru:2"]
    assert settings.providers == {"twilio": {"account_sid": "AC1"}}


def test_dotenv_file(tmp_path: Path):
    """A .env file in the working directory is read."""
    (tmp_path / ".env").write_text("CASCADE_SWEEP_INTERVAL=2.5\n")
    assert load_settings().sweep_interval == 2.5


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CASCADE_SWEEP_INTERVAL", "-1", "CASCADE_SWEEP_INTERVAL: Input should be greater than 0"),
        ("CASCADE_API_KEYS", "short", "CASCADE_API_KEYS"),
        (
            "CASCADE_SANDBOX__CHANNELS__PUSH__READ_PROBABILITY",
            "2",
            "CASCADE_SANDBOX__CHANNELS__PUSH__READ_PROBABILITY",
        ),
        ("CASCADE_API_PORT", "99999", "CASCADE_API_PORT"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
):
    """Every bad variable is named in one message."""
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert message in str(caught.value)


def test_production_refuses_defaults(monkeypatch: pytest.MonkeyPatch):
    """In production the dev key and an empty receipt secret are refused."""
    monkeypatch.setenv("CASCADE_ENVIRONMENT", "production")
    with pytest.raises(SettingsError, match="CASCADE_API_KEYS"):
        load_settings()
    monkeypatch.setenv("CASCADE_API_KEYS", "a-real-key-123")
    with pytest.raises(SettingsError, match="CASCADE_RECEIPT_SECRET"):
        load_settings()
    monkeypatch.setenv("CASCADE_RECEIPT_SECRET", "a-real-secret")
    assert load_settings().effective_api_keys == ["a-real-key-123"]
