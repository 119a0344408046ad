"""The shipped deployment files: compose topology, Dockerfile, ``.env.example``, LICENSE.

There is no Docker engine on the test machines, so the compose file is parsed and
every container's command is parsed by the real ``dispatcher`` CLI; every setting the
files name must be one Cascade reads.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.settings import Settings, load_settings
from config.variables import unknown_variables
from dispatcher import cli, local_commands
from dispatcher.queues import QUEUES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(name="compose", scope="module")
def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text()))


def cascade_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services running our image (the anchors merged by YAML)."""
    return {n: s for n, s in compose["services"].items() if s.get("image") == "cascade:latest"}


def parsed(command: list[str]) -> argparse.Namespace:
    try:
        return cli.parser().parse_args(command)
    except SystemExit:
        raise AssertionError(f"`dispatcher {' '.join(command)}` is not a valid command") from None


def test_every_service_command_exists_in_the_cli(compose: dict[str, Any]):
    """Each container's command parses with the real CLI and names a real subcommand."""
    services = cascade_services(compose)
    assert set(services) == {
        "migrate", "api", "worker-free", "worker-email", "worker-sms", "beat", "flower"
    }  # fmt: skip
    functions = {name: parsed(s["command"]).func for name, s in services.items()}
    assert functions["migrate"] is local_commands.cmd_migrate
    assert functions["api"] is local_commands.cmd_api
    assert functions["beat"] is local_commands.cmd_beat
    assert functions["flower"] is local_commands.cmd_flower
    assert {functions[n] for n in ("worker-free", "worker-email", "worker-sms")} == {
        local_commands.cmd_worker
    }


def test_topology(compose: dict[str, Any]):
    """PostgreSQL and Redis, a multi-process API, every queue served exactly once, one beat,
    Flower reachable only with a password, migrations before everything else."""
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert parsed(services["api"]["command"]).workers >= 2
    served = [
        queue
        for name, service in cascade_services(compose).items()
        if name.startswith("worker")
        for queue in parsed(service["command"]).queues.split(",")
    ]
    assert sorted(served) == sorted(QUEUES)
    assert [n for n, s in cascade_services(compose).items() if s["command"] == ["beat"]] == ["beat"]
    flower = services["flower"]["environment"]
    assert flower["CASCADE_FLOWER_ADDRESS"] == "0.0.0.0"
    assert ":?" in flower["CASCADE_FLOWER_PASSWORD"]  # compose refuses to start without it
    for name, service in cascade_services(compose).items():
        env = service["environment"]
        assert env["CASCADE_ENVIRONMENT"] == "production", name
        assert env["CASCADE_DATABASE_URL"].startswith("postgresql://"), name
        if name != "migrate":
            assert service["depends_on"]["migrate"] == {
                "condition": "service_completed_successfully"
            }, name
    assert services["rabbitmq"]["profiles"] == ["rabbitmq"]


def test_every_named_setting_exists(compose: dict[str, Any]):
    """No typo in a variable of compose.yaml or .env.example (commented examples included)."""
    names = [n for s in compose["services"].values() for n in s.get("environment") or {}]
    example = (ROOT / ".env.example").read_text()
    names += re.findall(r"^#?\s*(CASCADE_[A-Z0-9_]+)=", example, re.MULTILINE)
    assert len(names) > 20
    assert unknown_variables(names, Settings) == []


def test_env_example_is_a_valid_production_configuration(monkeypatch: pytest.MonkeyPatch):
    """Read as the .env file, the example loads as production settings (the secrets are
    placeholders to replace)."""
    monkeypatch.setenv("CASCADE_ENVIRONMENT", "production")
    settings = load_settings(_env_file=ROOT / ".env.example")
    assert settings.production_problems() == []
    assert settings.public_url == "https://cascade.example.com"
    assert settings.flower_password.get_secret_value() == "replace-me"


def test_dockerfile_is_multi_stage_slim_and_unprivileged():
    """Two stages on a slim base; the final one copies only the virtualenv and runs as a
    user of its own, with `dispatcher` as the entry point."""
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(stages) == 2
    assert all(base.endswith("-slim") for base in stages)
    final = text.split("\nFROM ")[-1]
    assert re.findall(r"^COPY (.*)", final, re.MULTILINE) == ["--from=build /opt/venv /opt/venv"]
    assert re.search(r"^USER cascade$", final, re.MULTILINE)
    assert 'ENTRYPOINT ["dispatcher"]' in final
    for source in re.findall(r"^COPY (?!--)(.*) \S+$", text, re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), path
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", "data"} <= set(ignored)


def test_license_is_the_mit_license_pyproject_names():
    """LICENSE holds the MIT text, as pyproject.toml declares."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
