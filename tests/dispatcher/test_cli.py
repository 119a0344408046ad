"""The ``dispatcher`` command: clear messages naming file and field, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.simulators.server import free_port

ROOT = Path(__file__).resolve().parents[2]


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "dispatcher.cli", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd or ROOT,
        timeout=60,
        check=False,
    )


def test_shipped_cascades_check_ok():
    """The shipped cascades are valid and listed with their chain of channels."""
    result = run("cascades", "check")
    assert result.returncode == 0, result.stderr
    assert (
        "ok  order_status: push -> messenger(whatsapp,viber,vk,telegram) -> email -> sms"
        in result.stdout
    )
    assert "ok  marketing:" in result.stdout


def test_broken_cascade_names_file_line_and_field(tmp_path: Path):
    """A wrong file fails with exit 2 and one line per problem: file:line: field: message."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "name: broken\nttl: 1m\nsteps:\n  - channel: sms\n    wait_for: read\n    timeout: 2m\n"
    )
    result = run("cascades", "check", str(tmp_path))
    assert result.returncode == 2
    assert f"{broken}:5: steps.0.wait_for: sms cannot report 'read'" in result.stderr
    assert f"{broken}:2: ttl: 1m is shorter than the sum of the step timeouts (2m)" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_setting_names_the_variable(tmp_path: Path):
    """A bad environment variable stops the command with its name and no traceback."""
    result = run("cascades", "check", env={"CASCADE_SWEEP_INTERVAL": "soon"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "CASCADE_SWEEP_INTERVAL" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_provider_in_channels_is_refused(tmp_path: Path):
    """Routing a channel to a provider that does not exist names the variable."""
    result = run("cascades", "check", env={"CASCADE_CHANNELS__SMS": '["pigeon"]'}, cwd=tmp_path)
    assert result.returncode == 2
    assert "CASCADE_CHANNELS__SMS: unknown provider 'pigeon'" in result.stderr


def test_missing_provider_settings_are_named_all_at_once(tmp_path: Path):
    """Providers listed without their credentials: every missing setting in one run."""
    result = run(
        "cascades",
        "check",
        env={
            "CASCADE_CHANNELS__SMS": '["twilio", "smsru"]',
            "CASCADE_CHANNELS__EMAIL": '["mailgun"]',
        },
        cwd=tmp_path,
    )
    assert result.returncode == 2
    for name in [
        "CASCADE_PROVIDERS__MAILGUN__API_KEY",
        "CASCADE_PROVIDERS__MAILGUN__DOMAIN",
        "CASCADE_PROVIDERS__MAILGUN__SENDER",
        "CASCADE_PROVIDERS__SMSRU__API_ID",
        "CASCADE_PROVIDERS__TWILIO__ACCOUNT_SID",
        "CASCADE_PROVIDERS__TWILIO__AUTH_TOKEN",
    ]:
        assert f"{name}: Field required" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_variable_is_warned_on_the_command_line(tmp_path: Path):
    """A typo in a variable's name is a warning with a suggestion; the command still runs."""
    result = run("cascades", "check", env={"CASCADE_SWEEP_INTERVALL": "2"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "dispatcher: warning: unknown setting CASCADE_SWEEP_INTERVALL "
        "(did you mean CASCADE_SWEEP_INTERVAL?)"
    ]


def test_sandbox_off_and_no_provider_reports_unconfigured_channels(tmp_path: Path):
    """With the sandbox off, a cascade using a channel without a provider fails the check."""
    result = run("cascades", "check", env={"CASCADE_SANDBOX__ENABLED": "false"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "no provider is configured for push and the sandbox is off" in result.stderr


def test_every_command_and_option_has_help():
    """`--help` describes every command, and every option of every command."""
    import argparse

    from dispatcher.cli import parser

    def walk(node: argparse.ArgumentParser, path: str) -> list[str]:
        missing = []
        if not node.description:
            missing.append(f"{path}: no description")
        for action in node._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                for name, child in action.choices.items():
                    if not helps.get(name):
                        missing.append(f"{path} {name}: no help line")
                    missing += walk(child, f"{path} {name}")
            elif not action.help:
                missing.append(f"{path} {action.dest}: no help")
        return missing

    assert walk(parser(), "dispatcher") == []


def test_version():
    """`dispatcher --version` prints the package version."""
    from importlib.metadata import version

    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"dispatcher {version('cascade-dispatcher')}"


@pytest.mark.parametrize(
    ("command", "variable"),
    [("api", "CASCADE_API_PORT"), ("flower", "CASCADE_FLOWER_PORT"), ("up", "CASCADE_FLOWER_PORT")],
)
def test_busy_port_is_one_line_naming_the_setting(tmp_path: Path, command: str, variable: str):
    """Something already listens on the port: one line naming the setting, exit 2."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {"CASCADE_API_PORT": str(free_port()), variable: str(port)}
        result = run(command, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"dispatcher: {variable}: port {port} on 127.0.0.1 is already in use "
        f"(is it already running? stop it or set {variable})"
    ]


def test_flower_on_every_address_without_a_password_is_refused(tmp_path: Path):
    """``dispatcher flower`` bound beyond localhost without a password: exit 2, clear message."""
    result = run(
        "flower",
        env={"CASCADE_FLOWER_ADDRESS": "0.0.0.0", "CASCADE_DATA_DIR": str(tmp_path)},
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "set CASCADE_FLOWER_PASSWORD" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("events", [True, False])
def test_worker_sends_task_events_as_configured(
    events: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """``CASCADE_TASK_EVENTS=false``: the worker starts without ``-E`` (no task events
    until a monitor enables them); by default it sends them from the start."""
    import argparse

    from dispatcher import local_commands
    from tests.conftest import make_settings

    started: list[list[str]] = []

    def exec_(argv: list[str]) -> int:  # instead of replacing this process
        started.append(argv)
        return 0

    monkeypatch.setattr(local_commands, "_exec", exec_)
    monkeypatch.delenv("CASCADE_DB_POOL_SIZE", raising=False)  # restored after the test
    monkeypatch.delenv("CASCADE_PROCESS", raising=False)
    settings = make_settings(f"sqlite:///{tmp_path / 'x.db'}", "redis://127.0.0.1:1/0", tmp_path)
    settings = settings.model_copy(update={"task_events": events})
    args = argparse.Namespace(queues=None, concurrency=None, pool=None)
    assert local_commands.cmd_worker(args, settings) == 0
    (argv,) = started
    assert ("-E" in argv) is events
