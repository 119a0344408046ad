"""Locale variants in cascade files: fallback order, coverage, rendering with sample data."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.cascade_files import CascadeConfigError, load_file
from config.templates import locale_chain
from dispatcher.cli import main
from providers.base import Channel

NOTICES = Path(__file__).parents[1] / "locales" / "notices.yaml"
HEAD = """\
name: loc
ttl: 1h
steps:
  - channel: push
    wait_for: read
    timeout: 2m
  - channel: sms
    wait_for: delivered
    timeout: 10m
templates:
  t:
    push: {title: "Order {{ id }}", body: "{{ status }}"}
    sms: {body: "Order {{ id }}: {{ status }}"}
"""


def problems(tmp_path: Path, text: str) -> list[tuple[str, str, int | None]]:
    path = tmp_path / "loc.yaml"
    path.write_text(text)
    with pytest.raises(CascadeConfigError) as caught:
        load_file(path, set(Channel))
    return [(p.field, p.message, p.line) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("tag", "chain"),
    [
        ("pt-BR", ["pt-br", "pt"]),
        ("pt_BR", ["pt-br", "pt"]),
        ("zh-Hant-TW", ["zh-hant-tw", "zh-hant", "zh"]),
        ("ru", ["ru"]),
        ("", []),
        (None, []),
    ],
)
def test_locale_chain(tag: str | None, chain: list[str]):
    """Most specific first; an empty or missing locale means the default variant."""
    assert locale_chain(tag) == chain


def test_test_cascade_has_its_variants():
    """notices.yaml: en default, ru and pt variants; the SMS step capped at two segments."""
    cascade = load_file(NOTICES, set(Channel))
    assert list(cascade.variants("order")) == ["en", "ru", "pt"]
    assert cascade.max_segments(Channel.SMS) == 2
    assert cascade.max_segments(Channel.PUSH) is None


def test_a_locale_that_does_not_cover_a_channel_is_named(tmp_path: Path):
    """ru gives push only: the check names the locale, the template and the channel."""
    text = HEAD + 'locales:\n  ru:\n    t:\n      push: {title: "Заказ", body: "x"}\n'
    assert problems(tmp_path, text) == [
        ("locales.ru.t", "locale ru does not cover channel sms", 16)
    ]


def test_a_variant_that_fails_with_the_sample_data_is_named(tmp_path: Path):
    """A ru variant using a variable the default does not: fails at load, naming the variant."""
    text = HEAD + (
        "locales:\n  ru:\n    t:\n"
        '      push: {title: "Заказ {{ id }}", body: "{{ status }}"}\n'
        '      sms: {body: "Заказ {{ order_no }}"}\n'
    )
    ((field, message, line),) = problems(tmp_path, text)
    assert (field, line) == ("locales.ru.t.sms", 18)
    assert message == (
        "locale ru does not render with the default's variables: "
        "missing data: 'order_no' is undefined"
    )


def test_explicit_samples_are_the_contract(tmp_path: Path):
    """With ``samples``, every variant (the default too) must render with exactly them."""
    text = HEAD + "samples:\n  t: {id: 1}\n"
    ((field, message, _),) = problems(tmp_path, text)[:1]
    assert field == "templates.t.push"
    assert message.startswith("locale en does not render with samples.t: missing data: 'status'")


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ("locales:\n  en:\n    t: {any: {body: x}}\n", "locales.en", "is the default_locale"),
        ("locales:\n  ru:\n    other: {any: {body: x}}\n", "locales.ru.other", "no default"),
        ("locales:\n  'r u':\n    t: {any: {body: x}}\n", "locales", "is not a locale"),
        ("samples:\n  nope: {}\n", "samples.nope", "no template 'nope'"),
        ("default_locale: english!\n", "default_locale", "should match pattern"),
    ],
)
def test_locale_mistakes_name_their_field(tmp_path: Path, extra: str, field: str, message: str):
    """Wrong locale keys, templates only a locale has, unknown samples: each named."""
    found = problems(tmp_path, HEAD + extra)
    assert any(f == field and message in m for f, m, _ in found), found


def test_max_segments_is_for_sms_steps_only(tmp_path: Path):
    """A cap on push is a mistake, named on the step."""
    text = HEAD.replace("timeout: 2m\n", "timeout: 2m\n    max_segments: 2\n", 1)
    assert problems(tmp_path, text)[0][:2] == ("steps.0", "max_segments is only for sms steps")


def test_cascades_check_names_the_failing_variant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    """``dispatcher cascades check`` prints the variant that fails; a good file lists locales."""
    bad = (
        HEAD + 'locales:\n  pt:\n    t:\n      push: {body: "{{ estado }}"}\n      sms: {body: x}\n'
    )
    (tmp_path / "loc.yaml").write_text(bad)
    monkeypatch.chdir(tmp_path)  # no .env from the checkout
    assert main(["cascades", "check", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "loc.yaml:17: locales.pt.t.push: locale pt does not render with" in err
    assert "'estado' is undefined" in err
    assert main(["cascades", "check", str(NOTICES.parent)]) == 0
    out = capsys.readouterr().out
    assert "ok  notices: push -> whatsapp -> sms; locales: en (default), ru, pt" in out
