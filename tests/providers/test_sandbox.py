"""The sandbox's latency setting: every answer waits the configured time first.

The sleep function is injected, so no test waits for real.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config.settings import SettingsError, load_settings
from providers.base import Channel, Message
from providers.errors import RejectedError
from providers.sandbox import SandboxConfig, SandboxProvider


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith("CASCADE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def message(recipient: str = "device-token-0123456789abcdefghij") -> Message:
    return Message(recipient=recipient, text="hello", reference="att-1", idempotency_key="key-1")


def test_latency_from_the_environment_is_slept_before_answering(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CASCADE_SANDBOX__LATENCY_MS", "200")
    config = load_settings().sandbox.provider_config()
    slept: list[float] = []
    provider = SandboxProvider(Channel.PUSH, config, sleep=slept.append)
    result = provider.send(message())
    assert slept == [pytest.approx(0.2)]
    assert result.provider_message_id.startswith("sbx-push-")


def test_no_latency_by_default() -> None:
    slept: list[float] = []
    provider = SandboxProvider(Channel.SMS, load_settings().sandbox.provider_config(), slept.append)
    provider.send(message("+14155552671"))
    provider.send(message("+14155552672"))
    assert slept == []


def test_a_scripted_failure_also_answers_after_the_latency() -> None:
    config = SandboxConfig(latency_ms=50, scenarios={"+14155552671": "rejected"})
    slept: list[float] = []
    provider = SandboxProvider(Channel.SMS, config, sleep=slept.append)
    with pytest.raises(RejectedError):
        provider.send(message("+14155552671"))
    assert slept == [pytest.approx(0.05)]


def test_negative_latency_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_SANDBOX__LATENCY_MS", "-1")
    with pytest.raises(SettingsError, match="CASCADE_SANDBOX__LATENCY_MS"):
        load_settings()


def read_receipts(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> int:
    """Reads the sandbox promises over 200 push sends with these variables set."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    provider = SandboxProvider(Channel.PUSH, load_settings().sandbox.provider_config())
    reads = 0
    for i in range(200):
        sent = provider.send(
            Message(
                recipient="token-0123456789abcdefghij",
                text="x",
                reference=f"a{i}",
                idempotency_key=f"k{i}",
            )
        )
        reads += sum(1 for r in sent.simulated if r.signal == "read")
    return reads


def test_readme_sandbox_example_simulates_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's example: a read is simulated only after a simulated delivery, so the
    read probability alone does nothing; with deliveries on, about 30% are read."""
    prefix = "CASCADE_SANDBOX__CHANNELS__PUSH__"
    assert read_receipts(monkeypatch, {f"{prefix}READ_PROBABILITY": "0.3"}) == 0
    reads = read_receipts(monkeypatch, {f"{prefix}DELIVERED_PROBABILITY": "1"})
    assert 40 <= reads <= 80


def test_telegram_sandbox_models_a_button_press(monkeypatch: pytest.MonkeyPatch) -> None:
    """Telegram has no deliveries: its sandbox simulates the "Got it" press (a read) from
    ``READ_PROBABILITY`` alone, after ``READ_AFTER`` seconds, and never a delivery."""
    prefix = "CASCADE_SANDBOX__CHANNELS__TELEGRAM__"
    monkeypatch.setenv(f"{prefix}READ_PROBABILITY", "1")
    monkeypatch.setenv(f"{prefix}DELIVERED_PROBABILITY", "1")
    monkeypatch.setenv(f"{prefix}READ_AFTER", "4")
    provider = SandboxProvider(Channel.TELEGRAM, load_settings().sandbox.provider_config())
    sent = provider.send(message("123456789"))
    assert [(r.signal, r.after) for r in sent.simulated] == [("read", 4.0)]
