"""A real browser (Debian's Chromium, driven by Playwright) on the stats page and on Flower.

One scenario run by ``dispatcher api``, ``worker``, ``beat`` and ``flower`` as separate
processes, with Twilio's simulator as the SMS provider and the sandbox for push: one push
read, one SMS rejected (the recipient replied STOP), one SMS retried (the provider was
out, then back) and delivered, one SMS of unknown outcome (a 500). Then Chromium logs in
to the stats page and checks every chart was drawn with the scenario's numbers (read back
from the charts themselves), opens a notification's timeline, and opens Flower's task list.

Locally the module skips when ``/usr/bin/chromium`` is missing; under ``CI=true`` it fails.
``CASCADE_TEST_UPDATE_SCREENSHOTS=1`` writes the screenshots the README shows into ``docs/``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from dispatcher.migrate import upgrade
from tests.conftest import CASCADES, TEST_KEY
from tests.e2e.conftest import ROOT, stop
from tests.simulators import twilio
from tests.simulators.server import free_port, serve
from tests.support.scenario import PHONE, PUSH_TOKEN
from tests.support.services import unavailable
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
#: Without the background-networking flags Chromium keeps dialling out (closed network here).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = ROOT / "docs"
UPDATE_SCREENSHOTS = os.environ.get("CASCADE_TEST_UPDATE_SCREENSHOTS") == "1"
CHARTS = ("funnel", "finished", "money", "read_time", "redundant")
STOPPED = "+15005550004"  #: Twilio simulator: 400 code 21610, the recipient replied STOP
ERROR = "+15005550500"  #: Twilio simulator: 500 code 20500, an unknown outcome


@dataclass
class Scenario:
    api: httpx.Client  #: our API over HTTP, authorised
    url: str  #: the API's address, where the stats pages are
    flower_url: str
    read: str  #: notification ids
    rejected: str
    retried: str
    unknown: str

    def attempt(self, nid: str) -> dict[str, Any]:
        return first(self.api, nid)


def show(api: httpx.Client, nid: str) -> dict[str, Any]:
    response = api.get(f"/v1/notifications/{nid}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def first(api: httpx.Client, nid: str) -> dict[str, Any]:
    return dict(show(api, nid)["attempts"][0])


def notify(api: httpx.Client, customer: str, contact: dict[str, str]) -> str:
    response = api.put(f"/v1/customers/{customer}", json={"contacts": [contact]})
    assert response.status_code == 200, response.text
    body = {"customer_id": customer, "cascade": "basic", "content": {"text": "At the door"}}
    response = api.post("/v1/notifications", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def first_attempt(api: httpx.Client, nid: str, state: str, **fields: Any) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        attempts = show(api, nid)["attempts"]
        if not attempts or attempts[0]["state"] != state:
            return None
        attempt = dict(attempts[0])
        return attempt if all(attempt[k] == v for k, v in fields.items()) else None

    try:
        return wait_until(probe, timeout=60, what=f"the first attempt of {nid} to be {state}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it is {show(api, nid)['attempts']}") from None


def sim_call(url: str, path: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{url}{path}", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def flower_sees_a_worker(url: str) -> bool:
    try:
        workers = httpx.get(f"{url}/workers", params={"json": 1}, timeout=2).json()["data"]
    except (httpx.HTTPError, ValueError, KeyError):
        return False
    return any(worker.get("status") for worker in workers)


def run_scenario(api: httpx.Client, sms: str) -> dict[str, str]:
    """The four notifications, each waited for until it shows what the test checks."""
    sim_call(sms, "/_sim/mode", mode="outage")  # 503 on every send: not sent, retried later
    retried = notify(api, "b-retry", {"channel": "sms", "address": PHONE})
    first_attempt(api, retried, "pending", tries=1)
    sim_call(sms, "/_sim/mode", mode="normal")  # beat rings its doorbell again when due
    attempt = first_attempt(api, retried, "sent")
    sim_call(sms, "/_sim/callback", message_id=attempt["provider_message_id"], status="delivered")
    first_attempt(api, retried, "delivered")

    read = notify(api, "b-read", {"channel": "push", "address": PUSH_TOKEN})
    push = first_attempt(api, read, "sent")
    response = api.post("/v1/receipts", json={"attempt_id": push["id"], "status": "read"})
    assert response.json()["notification_state"] == "read", response.text
    response = api.post("/v1/receipts", json={"attempt_id": push["id"], "status": "clicked"})
    assert response.json()["outcome"] == "late", response.text  # then tapped: counted, late

    rejected = notify(api, "b-rejected", {"channel": "sms", "address": STOPPED})
    wait_until(lambda: show(api, rejected)["state"] == "exhausted", what="the rejected SMS")
    assert first(api, rejected)["error_code"] == "21610"  # failed, and the cascade ended
    unknown = notify(api, "b-unknown", {"channel": "sms", "address": ERROR})
    first_attempt(api, unknown, "unknown")
    return {"read": read, "rejected": rejected, "retried": retried, "unknown": unknown}


def start(part: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``dispatcher <part>`` as an operator runs it."""
    with log.open("ab") as handle:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "dispatcher.cli", part],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def deployment_env(data: Path, redis_url: str, sms: str, api_port: int, flower_port: int):
    database = f"sqlite:///{data / 'browser.db'}"
    upgrade(database)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
    twilio_config = {
        "base_url": sms,
        "account_sid": twilio.ACCOUNT_SID,
        "auth_token": twilio.AUTH_TOKEN,
        "sender": "+15005550006",
    }
    env.update(
        CASCADE_DATA_DIR=str(data),
        CASCADE_DATABASE_URL=database,
        CASCADE_REDIS_URL=redis_url,
        CASCADE_CASCADES_DIR=str(CASCADES),
        CASCADE_API_KEYS=TEST_KEY,
        CASCADE_RECEIPT_SECRET="test-receipt-secret",
        CASCADE_SANDBOX__OUTBOX=str(data / "outbox.jsonl"),
        CASCADE_API_PORT=str(api_port),
        CASCADE_PUBLIC_URL=f"http://127.0.0.1:{api_port}",
        CASCADE_FLOWER_PORT=str(flower_port),
        CASCADE_SWEEP_INTERVAL="0.5",
        CASCADE_RETRY_BACKOFF="0.5",
        CASCADE_CHANNELS=json.dumps({"sms": ["twilio"]}),
        CASCADE_PROVIDERS=json.dumps({"twilio": twilio_config}),
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.fixture(scope="module", name="scenario")
def _scenario(redis_base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """API, worker, beat and Flower as separate ``dispatcher`` processes; Twilio simulated."""
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    data = tmp_path_factory.mktemp("browser")
    redis_url = f"{redis_base}/6"
    redis.Redis.from_url(redis_url).flushdb()
    api_port, flower_port = free_port(), free_port()
    url, flower_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{flower_port}"
    log = data / "processes.log"
    processes: list[subprocess.Popen[bytes]] = []
    with (
        serve(twilio.create_app()) as sms,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=10
        ) as api,
    ):
        env = deployment_env(data, redis_url, sms, api_port, flower_port)
        try:
            processes += [start(part, env, log) for part in ("api", "worker", "beat", "flower")]
            try:
                wait_until(lambda: answers(f"{url}/healthz"), timeout=90, what="the API")
                wait_until(
                    lambda: flower_sees_a_worker(flower_url), timeout=90, what="Flower and a worker"
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{log.read_text()[-3000:]}") from None
            yield Scenario(api, url, flower_url, **run_scenario(api, sms))
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                stop(process)


@pytest.fixture(scope="module", name="browser")
def _browser(scenario: Scenario) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(name="page")
def _page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield page
    context.close()
    assert errors == [], errors


def screenshot(page: Any, name: str, tmp_path: Path) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=True)
    if UPDATE_SCREENSHOTS:
        DOCS.mkdir(exist_ok=True)
        page.screenshot(path=str(DOCS / name), full_page=True)


def chart(page: Any, chart_id: str) -> tuple[list[Any], dict[str, list[Any]]]:
    """The labels and numbers a chart drew, as it recorded them on its canvas."""
    canvas = page.locator(f"canvas#{chart_id}")
    labels = canvas.get_attribute("data-labels")
    values = canvas.get_attribute("data-values")
    assert labels is not None
    assert values is not None
    return json.loads(labels), json.loads(values)


def painted(page: Any, chart_id: str) -> int:
    """How many pixels of the canvas are not blank: a chart really drawn has thousands."""
    return int(
        page.evaluate(
            """(id) => {
                const c = document.getElementById(id);
                const pixels = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
                let n = 0;
                for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) n++;
                return n;
            }""",
            chart_id,
        )
    )


def test_stats_page_draws_the_scenario(scenario: Scenario, page: Any, tmp_path: Path):
    """Log in with the key, then every chart shows the scenario: 1 push read (then tapped),
    SMS 1 sent and delivered, 1 rejected, 1 unknown; finished on push, on SMS, exhausted,
    still open."""
    url = scenario.url
    page.goto(f"{url}/stats?since=1h")
    assert page.url.startswith(f"{url}/stats/login")
    page.fill("#key", TEST_KEY)
    page.click("form.login button")
    page.wait_for_url(f"{url}/stats?since=1h")
    for chart_id in CHARTS:
        page.wait_for_selector(f"canvas#{chart_id}[data-drawn='true']", state="attached")
    assert chart(page, "funnel") == (
        ["push", "sms"],
        {"sent": [1, 1], "delivered": [1, 1], "read": [1, 0], "clicked": [1, 0]},
    )
    assert chart(page, "finished") == (
        ["push", "sms", "exhausted", "in progress"],
        {"notifications": [1, 1, 1, 1]},
    )
    labels, values = chart(page, "read_time")
    assert labels == ["push"]
    assert len(values["median seconds to read"]) == 1
    assert chart(page, "redundant") == ([], {"sends": [], "cost": []})
    stats = scenario.api.get("/v1/stats", params={"since": "1h"}).json()
    assert (stats["cost"], stats["sms_only_cost"], stats["saved"]) == (0.1, 0.15, 0.05)
    _, money = chart(page, "money")
    assert money["cost"] == [p["cost"] for p in stats["series"]]
    assert money["SMS-only cost"] == [p["sms_only_cost"] for p in stats["series"]]
    assert money["saved so far"][-1] == 0.05
    tiles = {
        name: page.locator(f"[data-figure='{name}'] span").inner_text()
        for name in ("notifications", "cost", "sms_only_cost", "saved", "redundant_sends")
    }
    assert tiles == {
        "notifications": "4",
        "cost": "0.10",
        "sms_only_cost": "0.15",
        "saved": "0.05",
        "redundant_sends": "0",
    }
    links = page.locator("[data-figure='links'] tbody tr").all_inner_texts()
    assert [row.split("\t") for row in links] == [
        ["(the message, as the app reported)", "push", "1", "1"]
    ]
    for chart_id in ("funnel", "finished", "money", "read_time"):
        assert painted(page, chart_id) > 2000, chart_id
    screenshot(page, "stats-page.png", tmp_path)

    page.click(f"a[href='/stats/notifications/{scenario.retried}']")
    page.wait_for_selector("canvas#timeline[data-drawn='true']", state="attached")
    lanes = page.locator("canvas#timeline").get_attribute("data-lanes")
    assert lanes == '["notification","0 sms"]'
    marks = dict(page.evaluate("JSON.parse(document.getElementById('timeline').dataset.marks)"))
    assert {"accepted", "retry_scheduled", "sent", "delivered"} <= set(marks), marks
    assert marks["retry_scheduled"] == ["0 sms"]
    assert painted(page, "timeline") > 2000
    assert re.search(r"\bdelivered\b", page.locator("[data-figure='state']").inner_text())
    screenshot(page, "stats-timeline.png", tmp_path)


def test_flower_shows_the_failed_send_and_the_read(scenario: Scenario, page: Any, tmp_path: Path):
    """Flower's task list: the rejected SMS is under Failed; the push attempt shows as read."""
    rejected = scenario.attempt(scenario.rejected)["id"]
    read = scenario.attempt(scenario.read)["id"]
    page.goto(f"{scenario.flower_url}/tasks")
    page.wait_for_selector("#tasks-table tbody tr")
    page.click("button.task-state-filter[data-task-state='FAILURE']")
    failed = page.locator("#tasks-table tbody tr", has_text=rejected)
    failed.first.wait_for(timeout=10_000)
    screenshot(page, "flower-failed.png", tmp_path)
    page.click("button.task-state-filter[data-task-state='']")
    page.fill("input[type='search']", read)
    rows = page.locator("#tasks-table tbody tr", has_text=re.compile(r"\bread\b"))
    rows.first.wait_for(timeout=10_000)
    assert read in rows.first.inner_text()
    screenshot(page, "flower-read.png", tmp_path)
