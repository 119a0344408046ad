"""What a channel can confirm depends on its providers' settings, and the cascade check
names the setting that would make a refused signal possible."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.capabilities import Capabilities
from config.cascades import CascadeConfigError, load_file
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
    assert not given.can(Channel.TELEGRAM, Signal.READ)
