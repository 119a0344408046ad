"""The README's first command: `dispatcher up` brings up API, worker, beat and Flower,
with a private embedded Redis when none answers, and stops everything on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import CASCADES, TEST_KEY
from tests.e2e.conftest import ROOT
from tests.simulators.server import free_port
from tests.support.scenario import PHONE, PUSH_TOKEN
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def test_up_runs_everything_and_stops_on_ctrl_c(tmp_path: Path):
    """No Redis at the URL: an embedded one starts, the cascade runs, Ctrl-C stops all."""
    api_port, flower_port, dead_redis = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
    env.update(
        CASCADE_DATA_DIR=str(tmp_path / "data"),
        CASCADE_REDIS_URL=f"redis://127.0.0.1:{dead_redis}/0",
        CASCADE_CASCADES_DIR=str(CASCADES),
        CASCADE_API_KEYS=TEST_KEY,
        CASCADE_API_PORT=str(api_port),
        CASCADE_FLOWER_PORT=str(flower_port),
        CASCADE_SWEEP_INTERVAL="0.5",
        PYTHONPATH=str(ROOT),
    )
    log = tmp_path / "up.log"
    with log.open("ab") as handle:
        up = subprocess.Popen(
            [sys.executable, "-m", "dispatcher.cli", "up"],
            cwd=tmp_path,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    api = httpx.Client(
        base_url=f"http://127.0.0.1:{api_port}", headers={"Authorization": f"Bearer {TEST_KEY}"}
    )
    try:
        wait_until(lambda: "Cascade is up" in log.read_text(), timeout=90, what="'up'")
        # "up" is printed only once both answer: no waiting from here on.
        health = _get(api, "/healthz")
        assert health is not None
        assert health.json() == {"status": "ok", "database": "ok", "broker": "ok"}
        assert "started a private one" in log.read_text()
        flower = _get(httpx, f"http://127.0.0.1:{flower_port}/")
        assert flower is not None
        assert "Flower" in flower.text
        api.put(
            "/v1/customers/u1",
            json={
                "contacts": [
                    {"channel": "push", "address": PUSH_TOKEN},
                    {"channel": "sms", "address": PHONE},
                ]
            },
        )
        nid = api.post(
            "/v1/notifications",
            json={"customer_id": "u1", "cascade": "short", "content": {"text": "hi"}},
        ).json()["id"]
        done = wait_until(
            lambda: (r := api.get(f"/v1/notifications/{nid}").json())["state"] == "exhausted" and r,
            timeout=60,
            what="the cascade to run through worker and beat",
        )
        assert [(a["channel"], a["state"]) for a in done["attempts"]] == [
            ("push", "escalated"),
            ("sms", "escalated"),
        ]
    finally:
        api.close()
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=60)
    assert code == 0, log.read_text()[-3000:]
    assert _get(httpx, f"http://127.0.0.1:{api_port}/healthz") is None
    assert "Traceback" not in log.read_text()


def _get(client, url: str):
    try:
        response = client.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    return response if response.status_code == 200 else None
