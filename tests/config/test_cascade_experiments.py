"""The ``experiment:`` block of a cascade file: variants load; mistakes name the variant's field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from config.cascade_files import CascadeConfigError, load_cascades, load_file
from dispatcher.cli import main
from providers.base import Channel
from tests.support.cascade_files import problems_of

AB = Path(__file__).parents[1] / "experiments" / "ab.yaml"
BASE = AB.read_text()
SMS_STEP = (
    "        - channel: sms\n          wait_for: delivered\n          timeout: 240s\n      ttl"
)


def test_variants_load_with_their_own_steps_and_ttl():
    """A variant without steps is the cascade as written; one with steps replaces them."""
    cascade = load_file(AB, set(Channel))
    assert cascade.experiment_name == "push-vs-email"
    assert cascade.experiment is not None
    assert cascade.experiment.weights() == [("control", 3.0), ("email_first", 1.0)]
    assert [s.channel for s in cascade.variant("control").steps] == ["push", "sms"]
    assert cascade.variant("control").ttl == timedelta(hours=1)
    assert [s.channel for s in cascade.variant("email_first").steps] == ["email", "sms"]
    assert cascade.variant("email_first").ttl == timedelta(minutes=30)
    assert cascade.every_channel() == [Channel.PUSH, Channel.SMS, Channel.EMAIL]


@pytest.mark.parametrize(
    ("text", "field", "message", "line"),
    [
        (
            BASE.replace("        - channel: email", "        - channel: emial"),
            "experiment.variants.1.steps.0.channel",
            "unknown channel 'emial' (did you mean 'email'?",
            21,
        ),
        (
            BASE.replace("weight: 3", "weight: 0"),
            "experiment.variants.0.weight",
            "greater than 0",
            17,
        ),
        (
            BASE.replace("weight: 3", "weight: .inf"),
            "experiment.variants.0.weight",
            "Input should be a finite number",
            17,
        ),
        (
            BASE.replace("weight: 1\n", "weight: .nan\n"),
            "experiment.variants.1.weight",
            "Input should be a finite number",
            19,
        ),
        (
            BASE.replace("weight: 1\n", "weight: true\n"),
            "experiment.variants.1.weight",
            "a number is needed here, not true/false",
            19,
        ),
        (
            BASE.replace("weight: 3", "weight: 1e308").replace("weight: 1\n", "weight: 1e308\n"),
            "experiment.variants",
            "the weights add up to more than a float can hold",
            15,
        ),
        (
            BASE.replace("name: email_first", "name: control"),
            "experiment.variants",
            "variant names must be unique: control given twice",
            15,
        ),
        (
            BASE.replace(SMS_STEP, SMS_STEP.replace("delivered", "read")),
            "experiment.variants.1.steps.1.wait_for",
            "sms cannot report 'read'",
            25,
        ),
        (
            BASE.replace(
                "          wait_for: delivered\n          timeout: 120s",
                "          wait_fro: delivered\n          timeout: 120s",
            ),
            "experiment.variants.1.steps.0.wait_fro",
            "unknown key (did you mean `wait_for`?)",
            22,
        ),
        (
            BASE.replace("ttl: 30m", "ttl: 5m"),
            "experiment.variants.1.ttl",
            "5m is shorter than the sum of the step timeouts (6m)",
            27,
        ),
        (
            BASE[: BASE.index("    - name: email_first")],
            "experiment.variants",
            "an experiment needs at least two variants",
            15,
        ),
        (
            BASE.replace(SMS_STEP, SMS_STEP.replace("channel: sms", "channel: email")),
            "experiment.variants.1.steps.1.channel",
            "email appears twice",
            24,
        ),
        (
            BASE + "templates:\n  t:\n    push: {body: hi}\n    sms: {body: hi}\n",
            "experiment.variants.1.steps",
            "templates.t: no template for channel email",
            20,
        ),
    ],
)
def test_variant_mistakes_name_the_variant_field(tmp_path, text, field, message, line):
    """Each variant is checked with the cascade's rules; the problem points into it."""
    [(found_field, found_message, found_line)] = problems_of(tmp_path, text, name="ab.yaml")
    assert (found_field, found_line) == (field, line)
    assert message in found_message


def test_variant_channel_without_provider_is_reported(tmp_path):
    """A channel only the variant uses must be available too (startup fails otherwise)."""
    assert problems_of(tmp_path, BASE, {Channel.PUSH, Channel.SMS}, "ab.yaml") == [
        (
            "experiment.variants.1.steps.0.channel",
            "no provider is configured for email and the sandbox is off",
            21,
        )
    ]


def test_one_experiment_name_in_two_cascades_fails_at_load(tmp_path):
    """Statuses and stats are kept per experiment name: two cascades cannot share one."""
    (tmp_path / "a.yaml").write_text(BASE)
    (tmp_path / "b.yaml").write_text(BASE.replace("name: ab\n", "name: ab2\n", 1))
    with pytest.raises(CascadeConfigError) as caught:
        load_cascades(tmp_path, set(Channel))
    assert [(p.file.name, p.field) for p in caught.value.problems] == [
        ("b.yaml", "experiment.name")
    ]
    assert "also run by cascade 'ab'" in caught.value.problems[0].message


def test_broken_variant_does_not_hide_the_other_variants_problems(tmp_path):
    """One pass: variant 1's schema error, and variant 2's rule problems (it parsed)."""
    text = BASE.replace("        - channel: email", "        - channel: emial") + (
        "    - name: c\n"
        "      weight: 1\n"
        "      steps:\n"
        "        - {channel: sms, wait_for: read, timeout: 120s}\n"
        "      ttl: 1m\n"
    )
    found = problems_of(tmp_path, text, set(Channel), "ab.yaml")
    assert [(field, line) for field, _, line in found] == [
        ("experiment.variants.1.steps.0.channel", 21),
        ("experiment.variants.2.steps.0.wait_for", 31),
        ("experiment.variants.2.ttl", 32),
    ]
    assert "unknown channel 'emial' (did you mean 'email'?" in found[0][1]
    assert "sms cannot report 'read'" in found[1][1]
    assert "1m is shorter than the sum of the step timeouts (2m)" in found[2][1]


def test_broken_step_and_broken_variant_do_not_hide_a_variant_problem(tmp_path):
    """A cascade step and a variant that do not parse, and a third variant that does: its
    rule problem is reported with the file's variant index."""
    text = (
        BASE.replace("  - channel: push\n", "  - channel: pusj\n")
        .replace("name: control\n      weight: 3", "name: control\n      weight: -3")
        .replace("ttl: 30m", "ttl: 5m")
    )
    assert [(field, line) for field, _, line in problems_of(tmp_path, text, None, "ab.yaml")] == [
        ("steps.0.channel", 7),
        ("experiment.variants.0.weight", 17),
        ("experiment.variants.1.ttl", 27),
    ]


def _check_listing(
    tmp_path: Path,
    files: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> list[str]:
    """The lines ``dispatcher cascades check`` prints for ``files`` (name -> text)."""
    directory = tmp_path / "cascades"
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
    monkeypatch.chdir(tmp_path)  # no .env from the checkout
    assert main(["cascades", "check", str(directory)]) == 0, capsys.readouterr().err
    return capsys.readouterr().out.splitlines()


def test_cascades_check_lists_the_variants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    """Each variant with its weight and the chain it runs (the README's example)."""
    assert _check_listing(tmp_path, {"ab.yaml": BASE}, capsys, monkeypatch) == [
        "ok  ab: push -> sms; experiment push-vs-email: "
        "control (3) push -> sms, email_first (1) email -> sms"
    ]


ADAPTIVE_VARIANT = "    - name: adaptive\n      weight: 1\n      order: adaptive\n"


def test_cascades_check_shows_adaptive_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    """A variant that runs in adaptive order is marked; so is a cascade with order: adaptive
    (its variants inherit it unless they set order: static)."""
    adaptive_cascade = (
        BASE.replace("name: ab\n", "name: ab2\n", 1)
        .replace("name: push-vs-email", "name: adaptive-vs-static")
        .replace("quiet_hours: ignore\n", "quiet_hours: ignore\norder: adaptive\n")
        .replace("      ttl: 30m\n", "      ttl: 30m\n      order: static\n")
    )
    files = {"ab.yaml": BASE + ADAPTIVE_VARIANT, "ab2.yaml": adaptive_cascade}
    assert _check_listing(tmp_path, files, capsys, monkeypatch) == [
        "ok  ab: push -> sms; experiment push-vs-email: control (3) push -> sms, "
        "email_first (1) email -> sms, adaptive (1) push -> sms [adaptive order]",
        "ok  ab2: push -> sms; order adaptive; experiment adaptive-vs-static: "
        "control (3) push -> sms [adaptive order], email_first (1) email -> sms",
    ]
