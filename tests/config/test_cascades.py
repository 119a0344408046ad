"""Cascade files: every shipped one loads; every mistake names file, line and field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from config.cascade_files import CascadeConfigError, load_cascades, load_file
from config.durations import format_duration, parse_duration
from config.settings import SHIPPED_CASCADES
from providers.base import Channel
from tests.support.cascade_files import problems_of

GOOD = """\
name: ok
ttl: 1h
steps:
  - channel: push
    wait_for: read
    timeout: 2m
  - channel: sms
    wait_for: delivered
    timeout: 10m
"""


def test_shipped_cascades_load():
    """The cascades we ship are valid, with every channel available."""
    cascades = load_cascades(SHIPPED_CASCADES, set(Channel))
    assert {"order_status", "marketing", "demo"} <= set(cascades)
    assert "sms" not in [s.channel for s in cascades["marketing"].steps]


@pytest.mark.parametrize(
    ("text", "field", "message", "line"),
    [
        (
            GOOD.replace("channel: sms", "channel: pigeon"),
            "steps.1.channel",
            "unknown channel 'pigeon'",
            7,
        ),
        (GOOD.replace("delivered", "read"), "steps.1.wait_for", "sms cannot report 'read'", 8),
        (
            GOOD.replace("channel: sms", "channel: telegram"),
            "steps.1.wait_for",
            "telegram cannot report 'delivered'",
            8,
        ),
        (GOOD.replace("timeout: 2m", "timeout: 0s"), "steps.0", "timeout must be positive", 4),
        (
            GOOD.replace("timeout: 2m", "timeout: soon"),
            "steps.0.timeout",
            "'soon' is not a duration",
            6,
        ),
        (GOOD.replace("channel: sms", "channel: push"), "steps.1.channel", "push appears twice", 7),
        ("name: x\nttl: 1h\nsteps: []\n", "steps", "at least 1 item", 3),
        (GOOD.replace("channel: sms", "channel: messenger"), "steps.1", "needs 'among'", 7),
        (
            GOOD.replace("    wait_for: delivered", "    among: [viber]\n    wait_for: delivered"),
            "steps.1",
            "'among' is only for channel: messenger",
            7,
        ),
        (
            GOOD.replace("ttl: 1h", "ttl: 5m"),
            "ttl",
            "5m is shorter than the sum of the step timeouts (12m)",
            2,
        ),
        (GOOD + "colour: blue\n", "colour", "unknown key", 10),
        (GOOD.replace("name: ok", "name: Not OK"), "name", "should match pattern", 1),
    ],
    ids=[
        "unknown-channel",
        "sms-read",
        "telegram-read",
        "zero-timeout",
        "bad-duration",
        "duplicate",
        "no-steps",
        "messenger-without-among",
        "among-on-sms",
        "ttl-too-short",
        "unknown-key",
        "bad-name",
    ],
)
def test_each_mistake_is_reported(tmp_path: Path, text: str, field: str, message: str, line: int):
    """One problem per mistake, naming the field, with its line."""
    problems = problems_of(tmp_path, text)
    assert len(problems) == 1, problems
    ((got_field, got_message, got_line),) = problems
    assert (got_field, got_line) == (field, line)
    assert message in got_message


def test_group_member_duplicating_a_step_and_delivered_on_telegram_member(tmp_path: Path):
    """A group member repeating a step, or waiting for 'delivered' on Telegram, is an error."""
    text = """\
name: g
ttl: 1h
steps:
  - channel: viber
    wait_for: read
    timeout: 1m
  - channel: messenger
    among: [viber, telegram]
    wait_for: delivered
    timeout: 1m
"""
    fields = {(f, m.split(" (")[0]) for f, m, _ in problems_of(tmp_path, text)}
    assert fields == {
        ("steps.1.channel", "viber appears twice"),
        ("steps.1.wait_for", "telegram cannot report 'delivered'"),
    }


def test_templates_cover_channels_and_compile(tmp_path: Path):
    """A template set missing a channel, and a template that does not compile, are errors."""
    text = GOOD + 'templates:\n  t:\n    push: {body: "{{ order_id }"}\n'
    problems = problems_of(tmp_path, text)
    assert ("templates.t", "no template for channel sms", 11) in problems  # the key line
    assert any(f == "templates.t.push" and "template syntax" in m for f, m, _ in problems)


def test_unavailable_channel(tmp_path: Path):
    """A channel with no provider (sandbox off) is reported at load time, not at send time."""
    problems = problems_of(tmp_path, GOOD, available={Channel.PUSH})
    assert problems == [
        ("steps.1.channel", "no provider is configured for sms and the sandbox is off", 7)
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [("name: [unclosed\n", "not valid YAML"), ("- just\n- a list\n", "expected a mapping")],
)
def test_not_a_cascade_file(tmp_path: Path, text: str, message: str):
    """Broken YAML and a non-mapping file are reported as such."""
    ((_, got, _),) = problems_of(tmp_path, text)
    assert message in got


def test_directory_problems(tmp_path: Path):
    """Two files with one name, and an empty directory, are refused."""
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yml").write_text(GOOD)
    with pytest.raises(CascadeConfigError) as caught:
        load_cascades(tmp_path)
    assert [p.message for p in caught.value.problems] == ["cascade 'ok' is defined twice"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CascadeConfigError, match="no cascade files"):
        load_cascades(empty)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("90s", 90), ("15m", 900), ("1.5h", 5400), ("1d", 86400), (45, 45), ("30", 30), (" 2m ", 120)],
)
def test_parse_duration(raw: object, seconds: float):
    """Durations as operators write them."""
    assert parse_duration(raw) == timedelta(seconds=seconds)


@pytest.mark.parametrize("raw", ["", "m", "2w", "-1m", True, None, [1]])
def test_bad_duration(raw: object):
    """Anything else is a ValueError with the expected format."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(raw)


@pytest.mark.parametrize(
    ("seconds", "text"), [(120, "2m"), (90, "90s"), (7200, "2h"), (86400, "1d"), (1.5, "1.5s")]
)
def test_format_duration(seconds: float, text: str):
    """The shortest exact form."""
    assert format_duration(timedelta(seconds=seconds)) == text


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("PT10M", 600), ("P1DT2H", 93600), ("P2W", 14 * 86400), ("PT1.5S", 1.5), ("pt90s", 90)],
)
def test_parse_iso_8601_duration(raw: str, seconds: float):
    """ISO 8601 durations (the OpenAPI's ``format: duration``) parse too."""
    assert parse_duration(raw) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("99999999999d", "longer than the maximum"),
        ("999999999d", "longer than the maximum"),
        (1e300, "longer than the maximum"),
        (10**400, "longer than the maximum"),
        (float("inf"), "longer than the maximum"),
        (float("nan"), "not a duration"),
        (-300, "negative"),
        ("P1Y", "years and months"),
        ("P1M", "years and months"),
        ("PT", "ISO 8601"),
        ("P1H", "ISO 8601"),
    ],
)
def test_out_of_range_durations_are_value_errors(raw: object, message: str):
    """Huge, infinite, negative or ambiguous durations are a ValueError, never an overflow."""
    with pytest.raises(ValueError, match=message):
        parse_duration(raw)


@pytest.mark.parametrize("ttl", ["99999999999d", "1.0e+300", ".inf"])
def test_overflowing_cascade_duration_names_file_and_field(tmp_path: Path, ttl: str):
    """A cascade ttl too large for a datetime is a config error on 'ttl', not an OverflowError."""
    [(field, message, line)] = problems_of(tmp_path, GOOD.replace("ttl: 1h", f"ttl: {ttl}"))
    assert (field, line) == ("ttl", 2)
    assert "longer than the maximum" in message


def test_ttl_is_optional_with_a_documented_default(tmp_path: Path):
    """Without ttl a cascade lives a day, or the sum of its timeouts when that is longer."""
    path = tmp_path / "c.yaml"
    path.write_text(GOOD.replace("ttl: 1h\n", ""))
    assert load_file(path).ttl == timedelta(days=1)
    path.write_text(GOOD.replace("ttl: 1h\n", "").replace("timeout: 10m", "timeout: 30h"))
    assert load_file(path).ttl == timedelta(hours=30, minutes=2)


def test_every_problem_of_a_file_in_one_pass(tmp_path: Path):
    """An unknown channel, a misspelt key and a step that cannot report what it waits for
    are all reported together, each with a suggestion where one is close."""
    text = """\
name: all
steps:
  - channel: smss
    wait_for: delivered
    timeout: 1m
  - channel: telegram
    wait_for: delivered
    timeout: 1m
  - channel: email
    wiat_for: read
    timeout: 1m
  - channel: messenger
    among: [viber, vkk, {channel: whatsapp, wait_fr: read}]
    timeout: 1m
"""
    assert problems_of(tmp_path, text) == [
        (
            "steps.0.channel",
            "unknown channel 'smss' (did you mean 'sms'? "
            "known: push, telegram, whatsapp, viber, vk, email, sms, messenger)",
            3,
        ),
        ("steps.1.wait_for", "telegram cannot report 'delivered' (it can report: read, sent)", 7),
        ("steps.2.wiat_for", "unknown key (did you mean `wait_for`?)", 10),
        (
            "steps.3.among.1",
            "unknown channel 'vkk' (did you mean 'vk'? "
            "known: push, telegram, whatsapp, viber, vk, email, sms)",
            13,
        ),
        ("steps.3.among.2.wait_fr", "unknown key (did you mean `wait_for`?)", 13),
    ]


def test_unavailable_channels_reported_beside_schema_errors(tmp_path: Path):
    """With the sandbox off, a channel without a provider is named even when another step
    of the file is broken, with the step's index in the file."""
    text = GOOD.replace("channel: push", "channel: pusj")
    assert [(f, line) for f, _, line in problems_of(tmp_path, text, available=set())] == [
        ("steps.0.channel", 4),
        ("steps.1.channel", 7),
    ]


WITH_TEMPLATE = (
    GOOD.replace("channel: push", "channel: whatsapp")
    + """templates:
  order:
    whatsapp: {body: "Order {{ id }}", template: order_update, params: [id], ack_button: 0}
    sms: {body: "Order {{ id }}"}
"""
)


@pytest.mark.parametrize(
    ("change", "into", "field", "message", "line"),
    [
        (
            "template: order_update, ",
            "",
            "templates.order.whatsapp",
            "ack_button names a button",
            12,
        ),
        (
            "ack_button: 0",
            "ack_button: 10",
            "templates.order.whatsapp.ack_button",
            "less than or equal to 9",
            12,
        ),
        (
            "ack_button: 0",
            "ack_button: yes",
            "templates.order.whatsapp.ack_button",
            "a number is needed here, not true/false",
            12,
        ),
        (
            "sms: {",
            "sms: {template: order_update, ",
            "templates.order.sms.template",
            "only whatsapp has approved templates: template would be ignored on sms",
            13,
        ),
    ],
    ids=["button-without-template", "index-out-of-range", "index-not-a-number", "sms-template"],
)
def test_provider_template_fields_are_checked(
    tmp_path: Path, change: str, into: str, field: str, message: str, line: int
):
    """The quick-reply button to sign belongs to an approved template, index 0-9; an
    approved template's fields belong to WhatsApp."""
    good = tmp_path / "good.yaml"
    good.write_text(WITH_TEMPLATE)
    template = load_file(good, None).templates["order"][Channel.WHATSAPP]
    assert (template.template, template.ack_button) == ("order_update", 0)
    ((got_field, got_message, got_line),) = problems_of(
        tmp_path, WITH_TEMPLATE.replace(change, into)
    )
    assert (got_field, got_line) == (field, line)
    assert message in got_message
