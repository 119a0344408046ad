"""`dispatcher api --workers N`: N server processes share the port, and all of them serve."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from dispatcher.migrate import upgrade
from tests.conftest import CASCADES, TEST_KEY
from tests.e2e.conftest import ROOT
from tests.simulators.server import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def test_api_with_two_workers_serves(tmp_path: Path, redis_base: str):
    """Two uvicorn workers start (a slow start is waited for, not killed), answer requests,
    log in the one format and stop on SIGTERM."""
    port = free_port()
    url = f"sqlite:///{tmp_path / 'api.db'}"
    upgrade(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
    env.update(
        CASCADE_DATABASE_URL=url,
        CASCADE_REDIS_URL=f"{redis_base}/10",
        CASCADE_CASCADES_DIR=str(CASCADES),
        CASCADE_API_KEYS=TEST_KEY,
        CASCADE_API_PORT=str(port),
        PYTHONPATH=str(ROOT),
    )
    log = tmp_path / "api.log"
    with log.open("ab") as handle:
        api = subprocess.Popen(
            [sys.executable, "-m", "dispatcher.cli", "api", "--workers", "2"],
            cwd=tmp_path,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:

        def started() -> bool:
            assert api.poll() is None, log.read_text()
            return log.read_text().count("Application startup complete") == 2

        wait_until(started, timeout=90, what="two API workers")
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
        cascades = httpx.get(f"{base}/v1/cascades", headers={"Authorization": f"Bearer {TEST_KEY}"})
        assert [c["name"] for c in cascades.json()] == ["basic", "short"]
        assert "died" not in log.read_text()
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=30)
    lines = log.read_text().splitlines()
    assert sum("Finished server process" in line for line in lines) == 2
    # Each worker logs in the one format (it sets it up itself: spawned, it inherits none).
    assert all(line.startswith("20") and " api[" in line for line in lines), lines
