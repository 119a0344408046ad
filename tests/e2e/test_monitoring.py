"""What an operator sees: Flower's task list and /metrics, from real processes.

``dispatcher api``, ``worker`` (prefork, 2 children), ``beat`` and ``flower`` run as
subprocesses on a private Redis database and a database of their own; the scenario
goes through the HTTP API: one push that is read, one SMS the provider rejects, one
SMS not sent (retried, then out of tries) and one SMS of unknown outcome. The tests
read what Flower renders (its HTTP API ``/api/tasks``, the data its task list shows)
and what Prometheus would scrape.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.migrate import upgrade
from tests.conftest import TEST_KEY
from tests.e2e.conftest import ROOT
from tests.simulators.server import free_port
from tests.support.scenario import PHONE, PUSH_TOKEN, TEXT
from tests.support.services import drop_postgres_database, postgres_database
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

CASCADES = Path(__file__).parent / "monitoring_cascades"
REJECTED, NOT_SENT, UNKNOWN = "+14155552672", "+14155552673", "+14155552674"
CUSTOMERS = {
    "reader": [{"channel": "push", "address": PUSH_TOKEN}, {"channel": "sms", "address": PHONE}],
    "rejected": [{"channel": "sms", "address": REJECTED}],
    "retried": [{"channel": "sms", "address": NOT_SENT}],
    "unknown": [{"channel": "sms", "address": UNKNOWN}],
}
#: Nothing of these may appear in any task field or log line.
PII = [PHONE, REJECTED, NOT_SENT, UNKNOWN, PUSH_TOKEN, TEXT, "4155552"]


@dataclass
class Watched:
    env: dict[str, str]
    log: Path
    api: httpx.Client
    flower: str
    redis_url: str
    processes: dict[str, subprocess.Popen[bytes]]
    ids: dict[str, str]

    def start(self, part: str) -> None:
        with self.log.open("ab") as handle:
            self.processes[part] = subprocess.Popen(
                [sys.executable, "-m", "dispatcher.cli", part],
                cwd=ROOT,
                env=self.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )

    def tasks(self, **params: str) -> dict[str, dict[str, Any]]:
        response = httpx.get(f"{self.flower}/api/tasks", params=params, timeout=5)
        response.raise_for_status()
        return dict(response.json())


def _database(backend: str, data: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        url = f"sqlite:///{data / 'cascade.db'}"
        upgrade(url)
        return url, None
    name = f"cascade_monitoring_{os.getpid()}"
    url = postgres_database(name)
    upgrade(url)
    return url, name


@pytest.fixture(scope="module", name="watched")
def _watched(
    backend: str, redis_base: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Watched]:
    data = tmp_path_factory.mktemp(f"monitoring-{backend}")
    database_url, pg_name = _database(backend, data)
    redis_url = f"{redis_base}/{9 if backend == 'sqlite' else 8}"
    redis.Redis.from_url(redis_url).flushdb()
    api_port, flower_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CASCADE_", "PROMETHEUS_"))}
    env.update(
        CASCADE_DATA_DIR=str(data),
        CASCADE_DATABASE_URL=database_url,
        CASCADE_REDIS_URL=redis_url,
        CASCADE_CASCADES_DIR=str(CASCADES),
        CASCADE_API_KEYS=TEST_KEY,
        CASCADE_API_PORT=str(api_port),
        CASCADE_FLOWER_PORT=str(flower_port),
        CASCADE_SWEEP_INTERVAL="0.5",
        CASCADE_RETRY_BACKOFF="0.2",
        CASCADE_MAX_SEND_TRIES="2",
        CASCADE_SANDBOX__SCENARIOS=json.dumps(
            {REJECTED: "rejected", NOT_SENT: "not_sent", UNKNOWN: "unknown"}
        ),
        PYTHONPATH=str(ROOT),
    )
    api = httpx.Client(
        base_url=f"http://127.0.0.1:{api_port}",
        headers={"Authorization": f"Bearer {TEST_KEY}"},
        timeout=10,
    )
    world = Watched(
        env, data / "processes.log", api, f"http://127.0.0.1:{flower_port}", redis_url, {}, {}
    )
    try:
        for part in ("api", "worker", "beat", "flower"):
            world.start(part)
        wait_until(lambda: _answers(api, "/readyz"), timeout=120, what="API, worker and beat")
        wait_until(lambda: _answers(httpx, f"{world.flower}/healthcheck"), 60, "Flower")
        wait_until(lambda: world.tasks() == {}, 30, "Flower's task list")
        world.ids = _scenario(api)
        yield world
    finally:
        api.close()
        for process in world.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in world.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if pg_name:
            drop_postgres_database(pg_name)


def _answers(client: Any, url: str) -> bool:
    try:
        return bool(client.get(url, timeout=2).status_code == 200)
    except httpx.HTTPError:
        return False


def _scenario(api: httpx.Client) -> dict[str, str]:
    """Four notifications; the push is read (the app's receipt); the rest run their course."""
    ids = {}
    for customer, contacts in CUSTOMERS.items():
        assert api.put(f"/v1/customers/{customer}", json={"contacts": contacts}).is_success
        response = api.post(
            "/v1/notifications",
            json={"customer_id": customer, "cascade": "monitored", "content": {"text": TEXT}},
        )
        assert response.status_code == 202, response.text
        ids[customer] = response.json()["id"]

    def push_sent() -> str | None:
        attempts = api.get(f"/v1/notifications/{ids['reader']}").json()["attempts"]
        return attempts[0]["id"] if attempts and attempts[0]["state"] == "sent" else None

    push = wait_until(push_sent, timeout=30, what="the push to be sent")
    read = api.post("/v1/receipts", json={"attempt_id": push, "status": "read"})
    assert read.json()["notification_state"] == "read", read.text

    def finished() -> dict[str, str] | None:
        states = {c: api.get(f"/v1/notifications/{i}").json()["state"] for c, i in ids.items()}
        return states if all(s in ("read", "exhausted") for s in states.values()) else None

    assert wait_until(finished, timeout=60, what="every notification to finish") == {
        "reader": "read",
        "rejected": "exhausted",
        "retried": "exhausted",
        "unknown": "exhausted",
    }
    return ids


def _rows(watched: Watched, customer: str, count: int) -> list[dict[str, Any]]:
    """The rows a Flower search for the customer's notification id finds, oldest first."""
    nid = watched.ids[customer]

    def found() -> list[dict[str, Any]] | None:
        rows = sorted(watched.tasks(search=nid).values(), key=lambda t: t["received"] or 0)
        done = all(r["state"] in ("SUCCESS", "FAILURE", "RETRY") for r in rows)
        return rows if len(rows) >= count and done else None

    return wait_until(found, timeout=30, what=f"{count} Flower rows for {customer}")


def _seen(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(r["name"], r["state"], r["result"] or r["exception"]) for r in rows]


def test_flower_shows_each_outcome_per_notification(watched: Watched):
    """Read push, rejected SMS, retried SMS, unknown SMS: the states and results in Flower,
    and a search by notification id finds every row of it."""
    assert _seen(_rows(watched, "reader", 2)) == [
        ("send.push", "SUCCESS", "'sent via sandbox'"),
        ("receipt.read", "SUCCESS", "'read (push, operator)'"),
    ]
    assert _seen(_rows(watched, "rejected", 2)) == [
        ("send.sms", "FAILURE", "SendFailed('failed via sandbox: sandbox_rejected')"),
        ("escalation", "SUCCESS", "'sms escalated (was failed)'"),
    ]
    assert _seen(_rows(watched, "retried", 3)) == [
        ("send.sms", "RETRY", "NotSent('retry via sandbox: sandbox_not_sent')"),
        ("send.sms", "FAILURE", "SendFailed('failed via sandbox: sandbox_not_sent')"),
        ("escalation", "SUCCESS", "'sms escalated (was failed)'"),
    ]
    assert _seen(_rows(watched, "unknown", 2)) == [
        (
            "send.sms",
            "FAILURE",
            "OutcomeUnknown('unknown via sandbox: sandbox_unknown; not resent')",
        ),
        ("escalation", "SUCCESS", "'sms escalated (was unknown)'"),
    ]
    receipt = _rows(watched, "reader", 2)[1]
    assert receipt["worker"].startswith("cascade-api@")  # applied by the API
    escalation = _rows(watched, "unknown", 2)[1]
    assert escalation["worker"].startswith("cascade-beat@")  # the sweep's timer
    # Flower's own filters: the three failed sends are under FAILURE, the retry under RETRY.
    assert len(watched.tasks(state="FAILURE")) == 3
    assert len(watched.tasks(state="RETRY")) == 1


def test_flower_lists_delivery_rows_only_and_no_pii(watched: Watched):
    """Every row is a send, receipt or escalation (no sweep rows); no phone, token or text
    in any field; failed sends were acknowledged, not redelivered."""
    _rows(watched, "unknown", 2)
    rows = watched.tasks()
    assert len(rows) == 9
    assert {r["name"] for r in rows.values()} == {
        "send.push",
        "send.sms",
        "receipt.read",
        "escalation",
    }
    text = json.dumps(rows)
    assert not [value for value in PII if value in text]
    client = redis.Redis.from_url(watched.redis_url)
    assert client.llen("sms") == 0
    assert client.hlen("unacked") == 0


def test_metrics_count_the_scenario_across_processes(watched: Watched):
    """/metrics merges the prefork children, the API and beat: the counters match."""
    _rows(watched, "unknown", 2)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(watched.api.get("/metrics").text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("cascade_notifications_accepted_total", cascade="monitored") == 4
    sends = {"channel": "sms", "provider": "sandbox"}
    assert value("cascade_sends_total", channel="push", provider="sandbox", outcome="sent") == 1
    assert value("cascade_sends_total", **sends, outcome="failed") == 2
    assert value("cascade_sends_total", **sends, outcome="retry") == 1
    assert value("cascade_sends_total", **sends, outcome="unknown") == 1
    assert value("cascade_receipts_total", channel="push", kind="read") == 1
    assert value("cascade_escalations_total", channel="sms") == 3
    assert value("cascade_notifications_finished_total", state="read") == 1
    assert value("cascade_notifications_finished_total", state="exhausted") == 3
    assert value("cascade_provider_failures_total", provider="sandbox", kind="not_sent") == 2
    assert value("cascade_cost_total", channel="sms", provider="sandbox") > 0  # the unknown
    assert value("cascade_send_seconds_count", channel="sms") == 4
    assert value("cascade_queue_depth", queue="sms") == 0
    assert value("cascade_oldest_overdue_escalation_seconds") == 0


def test_logs_name_process_and_ids_without_pii(watched: Watched):
    """One format across the four processes; send lines carry provider and ids; no PII."""
    _rows(watched, "unknown", 2)
    text = watched.log.read_text()
    for process in ("api", "worker", "beat", "flower"):
        assert f" {process}[" in text, process
    rejected = watched.ids["rejected"]
    line = next(
        line
        for line in text.splitlines()
        if f"notification_id={rejected}" in line and "dispatcher.worker: attempt" in line
    )
    assert ": failed notification_id=" in line
    assert "channel=sms provider=sandbox code=sandbox_rejected" in line
    assert not [value for value in PII if value in text]


def test_flower_history_survives_its_restart(watched: Watched):
    """Flower keeps its rows in the data directory: a restart shows the same list."""
    _rows(watched, "unknown", 2)
    before = set(watched.tasks())
    flower = watched.processes["flower"]
    flower.send_signal(signal.SIGTERM)
    flower.wait(timeout=30)
    watched.start("flower")
    wait_until(lambda: _answers(httpx, f"{watched.flower}/healthcheck"), 60, "Flower again")
    assert set(watched.tasks()) == before
