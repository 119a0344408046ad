"""One log format: process name and ``extra=`` fields in text or JSON; Flower's command."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from dispatcher.launcher import LaunchError, flower_command
from dispatcher.logs import JsonFormatter, TextFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "dispatcher.health", logging.ERROR, "x.py", 1, "provider demoted", None, None
    )
    record.__dict__.update(extra)
    return record


def test_text_lines_name_the_process_and_the_extra_fields():
    """The fields given with ``extra=`` are on the line (the stdlib format drops them)."""
    record = _record(provider="twilio", kind="not_sent")
    line = TextFormatter("worker").format(record)
    assert line.endswith(
        f" worker[{record.process}] ERROR dispatcher.health: provider demoted"
        " provider=twilio kind=not_sent"
    )


def test_json_lines_are_one_object_with_the_same_fields():
    """``CASCADE_LOG_FORMAT=json``: one object per line, extras as keys."""
    body = json.loads(JsonFormatter("beat").format(_record(attempt_id="a1", cost_s=1.5)))
    assert body["process"] == "beat"
    assert body["level"] == "ERROR"
    assert body["message"] == "provider demoted"
    assert (body["attempt_id"], body["cost_s"]) == ("a1", 1.5)


def test_celery_data_extra_is_not_repeated():
    """Celery passes its message's arguments (with a traceback) as ``data``: left out."""
    line = TextFormatter("worker").format(_record(data={"traceback": "Traceback ..."}))
    assert "Traceback" not in line


def _settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **values)


def test_flower_beyond_localhost_needs_a_password(tmp_path: Path):
    """0.0.0.0 without CASCADE_FLOWER_PASSWORD is refused with what to set."""
    with pytest.raises(LaunchError, match="CASCADE_FLOWER_PASSWORD"):
        flower_command(_settings(tmp_path, flower_address="0.0.0.0"))
    argv, env = flower_command(
        _settings(tmp_path, flower_address="0.0.0.0", flower_password="s3cret-pass")
    )
    assert "--basic-auth=admin:s3cret-pass" in argv
    assert "--address=0.0.0.0" in argv
    assert "FLOWER_UNAUTHENTICATED_API" not in env


def test_flower_keeps_its_rows_in_the_data_directory(tmp_path: Path):
    """Persistence in the data directory, the task limit, ids and results as columns."""
    argv, env = flower_command(_settings(tmp_path, flower_max_tasks=2000))
    assert "--persistent=True" in argv
    assert f"--db={tmp_path.resolve() / 'flower'}" in argv
    assert "--max_tasks=2000" in argv
    assert "--address=127.0.0.1" in argv
    assert any(a.startswith("--tasks_columns=") and "kwargs,result" in a for a in argv)
    assert env == {"CASCADE_PROCESS": "flower", "FLOWER_UNAUTHENTICATED_API": "true"}
