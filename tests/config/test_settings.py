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


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "CASCADE_CHANNELS__SMS",
            "twilio",
            "CASCADE_CHANNELS__SMS: Input should be a valid list (this setting takes JSON, "
            """e.g. CASCADE_CHANNELS__SMS='["twilio", "smsru"]')""",
        ),
        (
            "CASCADE_COSTS",
            "sms=0.05",
            "CASCADE_COSTS: not valid JSON (this setting takes JSON, "
            """e.g. CASCADE_COSTS='{"sms": 0.05, "whatsapp": 0.005}')""",
        ),
        (
            "CASCADE_MAX_PER_DAY",
            "3",
            "CASCADE_MAX_PER_DAY: Input should be a valid dictionary (this setting takes JSON",
        ),
    ],
)
def test_json_settings_say_json_is_expected(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
):
    """A list or map setting given as plain text says JSON is expected, with an example."""
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("CASCADE_SWEEP_INTERVALL", "CASCADE_SWEEP_INTERVAL"),
        ("CASCADE_PROVIDERS__TWILIO__AUTH_TOKN", "CASCADE_PROVIDERS__TWILIO__AUTH_TOKEN"),
        ("CASCADE_PROVIDERS__TWILLIO__AUTH_TOKEN", "CASCADE_PROVIDERS__TWILIO"),
        ("CASCADE_FLOWER_PASWORD", "CASCADE_FLOWER_PASSWORD"),
        ("cascade_redis_ulr", "CASCADE_REDIS_URL"),
    ],
)
def test_unknown_variable_is_warned_with_a_suggestion(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, name: str, suggestion: str
):
    """A misspelt variable is not silently ignored: a warning names it and the closest one."""
    monkeypatch.setenv(name, "1")
    with caplog.at_level("WARNING", logger="cascade.settings"):
        load_settings()
    assert [r.getMessage() for r in caplog.records] == [
        f"unknown setting {name} (did you mean {suggestion}?)"
    ]


def test_misspelt_nested_key_is_an_error_with_a_suggestion(monkeypatch: pytest.MonkeyPatch):
    """Inside a nested model (the sandbox) an unknown key is refused, with the closest name."""
    monkeypatch.setenv("CASCADE_SANDBOX__CHANNELS__PUSH__READ_PROBABILTY", "0.3")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "(did you mean CASCADE_SANDBOX__CHANNELS__PUSH__READ_PROBABILITY?)" in str(caught.value)


def test_known_and_test_variables_are_not_warned(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
):
    """Nested known names (channels, providers, sandbox) and CASCADE_TEST_* pass silently;
    a typo in .env is warned too."""
    for name, value in [
        ("CASCADE_SWEEP_INTERVAL", "2"),
        ("CASCADE_CHANNELS__SMS", '["twilio"]'),
        ("CASCADE_PROVIDERS__TWILIO__ACCOUNT_SID", "AC1"),
        ("CASCADE_PROVIDERS__TWILIO__RATE_LIMIT", "5"),
        ("CASCADE_SANDBOX__CHANNELS__PUSH__READ_PROBABILITY", "0.3"),
        ("CASCADE_MAX_PER_DAY", '{"marketing": 2}'),
        ("CASCADE_TEST_REDIS_URL", "redis://x"),
        ("CASCADE_PROCESS", "worker"),
    ]:
        monkeypatch.setenv(name, value)
    (tmp_path / ".env").write_text("CASCADE_BROKER_ULR=amqp://x\n")
    with caplog.at_level("WARNING", logger="cascade.settings"):
        load_settings()
    assert [r.getMessage() for r in caplog.records] == [
        "unknown setting CASCADE_BROKER_ULR (did you mean CASCADE_BROKER_URL?)"
    ]


def test_production_names_every_missing_setting_readably(monkeypatch: pytest.MonkeyPatch):
    """Both production problems in one message, each with the variable's real name."""
    monkeypatch.setenv("CASCADE_ENVIRONMENT", "production")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == (
        "invalid settings:\n"
        "  CASCADE_API_KEYS: set it in production (the dev key is refused)\n"
        "  CASCADE_RECEIPT_SECRET: set it in production"
    )


def test_broker_defaults_to_redis(monkeypatch: pytest.MonkeyPatch):
    """Without CASCADE_BROKER_URL Celery uses the Redis; with it, RabbitMQ (or any broker)."""
    monkeypatch.setenv("CASCADE_REDIS_URL", "redis://cache:6379/0")
    assert load_settings().effective_broker_url == "redis://cache:6379/0"
    monkeypatch.setenv("CASCADE_BROKER_URL", "amqp://guest:guest@rabbit:5672/cascade")
    assert load_settings().effective_broker_url == "amqp://guest:guest@rabbit:5672/cascade"
