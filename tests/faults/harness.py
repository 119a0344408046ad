"""The fault world: our API in-process, real ``dispatcher worker``/``beat`` subprocesses on
a private Redis, the Twilio simulator as the paid provider, and the tally every fault
scenario asserts and prints.

Every notification runs the ``fault`` cascade: a free sandbox push that nobody reads
(1 s), then one SMS through Twilio (2 s). So each notification may cause exactly one
paid request, which the simulator records with the attempt id (``StatusCallback``
carries ``ref=<attempt id>``) and the customer's own phone number.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
from fastapi.testclient import TestClient
from kombu import pools
from sqlmodel import Session, col, select

from config.cascade_files import load_cascades
from dispatcher.api.app import create_app
from dispatcher.db import get_engine
from dispatcher.models import Attempt, Event, Notification
from dispatcher.publisher import CeleryPublisher
from dispatcher.queues import QUEUES, create_celery
from dispatcher.runtime import Runtime, build_router
from dispatcher.states import OPEN_STATES
from tests.conftest import AUTH, make_settings
from tests.e2e.conftest import wait_ready, worker_env
from tests.faults.counts import Counts
from tests.simulators import twilio
from tests.simulators.server import serve
from tests.support.database import truncate
from tests.support.processes import dispatcher_process, stop, wait_children
from tests.support.waiting import wait_until

FAULT_CASCADE = """\
name: fault
description: Fault suite. A free push nobody reads, then one paid SMS.
category: transactional
ttl: 1h
quiet_hours: ignore
steps:
  - channel: push
    wait_for: read
    timeout: 1s
  - channel: sms
    wait_for: delivered
    timeout: 2s
"""
MESSAGES = "/Messages.json"
#: Worker timings, short enough that a killed claim is recovered within seconds.
TIMINGS = {"sweep_interval": 0.5, "republish_after": 3.0, "sending_stale_after": 6.0}
#: Doorbells travel in pairs here: every scenario runs send groups (a SIGKILL takes a
#: group's in-flight sends with it), and the paid sends still last long enough (4
#: children x 2 in flight, 0.5 s each) for a scenario to kill, flush or restart mid-send.
SEND_GROUP = 2


class SlowAnswers:
    """ASGI wrapper: the provider takes the SMS at once, then answers ``delay`` s later.

    The simulator has recorded (and "billed") the message before the wait, so a worker
    killed during the wait is killed mid-call, after the money was spent.
    """

    def __init__(self, app: Any, delay: float) -> None:
        self.app = app
        self.delay = delay

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith(MESSAGES):
            await self.app(scope, receive, send)
            return

        async def late(message: Any) -> None:
            if message["type"] == "http.response.start":
                await asyncio.sleep(self.delay)
            await send(message)

        await self.app(scope, receive, late)


@dataclass
class FaultWorld:
    runtime: Runtime
    api: TestClient
    sim: twilio.TwilioSimulator
    env: dict[str, str]
    data: Path
    processes: ExitStack
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    beats: list[subprocess.Popen[bytes]] = field(default_factory=list)
    concurrency: dict[int, int] = field(default_factory=dict)  #: worker pid -> children

    @property
    def log(self) -> Path:
        return self.data / "processes.log"

    def start_worker(self, queues: list[str], concurrency: int) -> subprocess.Popen[bytes]:
        """A ``dispatcher worker``; :meth:`wait_workers` waits until its children are up."""
        command = ["worker", "--queues", ",".join(queues), "--concurrency", str(concurrency)]
        process = dispatcher_process(command, self.env, self.log)
        self.processes.callback(stop, process)
        self.workers.append(process)
        self.concurrency[process.pid] = concurrency
        return process

    def wait_workers(self) -> None:
        for process in self.workers:
            wait_children(process, self.concurrency[process.pid], self.log)
        wait_ready(self.runtime.settings, self.workers[0], self.log)

    def start_beat(self) -> subprocess.Popen[bytes]:
        """A ``dispatcher beat`` with its own schedule file (its own data dir)."""
        env = dict(self.env)
        env["CASCADE_DATA_DIR"] = str(self.data / f"beat-{len(self.beats)}")
        process = dispatcher_process(["beat"], env, self.log)
        self.processes.callback(stop, process)
        self.beats.append(process)
        return process

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def log_count(self, text: str, since: int = 0) -> int:
        """How often ``text`` occurs in the processes' log after byte offset ``since``."""
        with self.log.open("rb") as handle:
            handle.seek(since)
            return handle.read().decode("utf-8", "replace").count(text)

    def sweep_total(self, key: str, since: int = 0) -> int:
        """Sum of one sweep report field (e.g. ``republished``) logged after ``since``."""
        with self.log.open("rb") as handle:
            handle.seek(since)
            lines = handle.read().decode("utf-8", "replace").splitlines()
        found = (re.search(rf"'{key}': (\d+)", line) for line in lines if "sweep {" in line)
        return sum(int(match.group(1)) for match in found if match)

    def submit(self, count: int) -> list[str]:
        """``count`` notifications, one new customer (own phone) each; their ids."""
        ids = []
        for n in range(count):
            response = self.api.post(
                "/v1/notifications",
                json={
                    "customer_id": f"f-{n}",
                    "cascade": "fault",
                    "content": {"title": "Parcel", "text": "Your parcel is at the door"},
                    "contacts": [
                        {"channel": "push", "address": "fcm-token-" + "f" * 40},
                        {"channel": "sms", "address": f"+1415555{1000 + n:04d}"},
                    ],
                },
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        return ids

    @contextmanager
    def sms_held(self) -> Iterator[None]:
        """The send worker stops taking SMS doorbells (they queue up in Redis) until exit."""
        # kombu keeps broker connections in process-wide pools: one opened before an
        # earlier scenario restarted Redis would be dead. Start from fresh ones.
        pools.reset()
        app = create_celery(self.runtime.settings)
        sender = [f"cascade-{self.workers[0].pid}@{socket.gethostname()}"]
        # A busy machine answers control commands slowly; limit=1 returns on the first reply.
        replies = app.control.cancel_consumer(
            "sms", destination=sender, reply=True, limit=1, timeout=30
        )
        assert replies, "the send worker did not confirm it stopped consuming sms"
        try:
            yield
        finally:
            app.control.add_consumer("sms", destination=sender, reply=True, limit=1, timeout=30)

    def submit_in_flight(self, count: int) -> list[str]:
        """``count`` notifications, all held at their SMS step until every one is there.

        However slow the machine, all of them are in flight when this returns: the
        SMS doorbells are queued, and the worker has just started on them.
        """
        with self.sms_held():
            ids = self.submit(count)
            wait_until(
                lambda: self.pending_sms() >= count,
                timeout=300,
                what=f"{count} SMS attempts queued",
            )
        return ids

    def pending_sms(self) -> int:
        with Session(self.runtime.engine) as session:
            query = select(Attempt.id).where(Attempt.channel == "sms", Attempt.state == "pending")
            return len(session.exec(query).all())

    def paid(self) -> list[tuple[str, str, str]]:
        """(attempt id, phone, message sid) of each SMS the provider accepted."""
        found = []
        for message in list(self.sim.sent):
            query = parse_qs(urlsplit(message["status_callback"] or "").query)
            found.append((query.get("ref", [""])[0], message["to"], message["sid"]))
        return found

    def open_count(self) -> int:
        with Session(self.runtime.engine) as session:
            states = [s.value for s in OPEN_STATES]
            rows = session.exec(select(Notification.id).where(col(Notification.state).in_(states)))
            return len(rows.all())

    def wait_final(self, timeout: float, tick: Callable[[], None] | None = None) -> None:
        """Every notification in a final state, within ``timeout`` seconds."""

        def done() -> bool:
            if tick is not None:
                tick()
            for process in self.workers:
                if process.poll() is not None:
                    raise AssertionError(f"worker exited:\n{self.log.read_text()[-3000:]}")
            return self.open_count() == 0

        wait_until(done, timeout=timeout, what=f"every notification final; {self.tally()}")

    def tally(self, **extra: int) -> Counts:
        paid = self.paid()
        per_attempt = Counter(ref for ref, _, _ in paid)
        per_phone = Counter(phone for _, phone, _ in paid)
        duplicates = max(
            sum(n - 1 for n in per_attempt.values()), sum(n - 1 for n in per_phone.values())
        )
        with Session(self.runtime.engine) as session:
            states = Counter(session.exec(select(Notification.state)).all())
            attempts = {a.id: a for a in session.exec(select(Attempt)).all()}
            events = session.exec(select(Event.type, Event.attempt_id)).all()
        unknown = {attempt for kind, attempt in events if kind == "unknown"}
        escalations = Counter(attempt for kind, attempt in events if kind == "escalated")
        steps = Counter((a.notification_id, a.step) for a in attempts.values())
        unexplained = sum(
            1
            for ref, _, sid in paid
            if ref not in unknown
            and (ref not in attempts or attempts[ref].provider_message_id != sid)
        )
        return Counts(
            notifications=sum(states.values()),
            paid_sends=len(paid),
            duplicates=duplicates,
            final_states=Counter(
                {s: n for s, n in states.items() if s not in {o.value for o in OPEN_STATES}}
            ),
            open=sum(n for s, n in states.items() if s in {o.value for o in OPEN_STATES}),
            unknowns=len(unknown),
            unexplained=unexplained,
            doubled_escalations=sum(n > 1 for n in escalations.values())
            + sum(n > 1 for n in steps.values()),
            extra=dict(extra),
        )


def twilio_providers(url: str) -> dict[str, dict[str, Any]]:
    # The status callback is never called back here; it makes every request carry
    # ref=<attempt id>.
    callback = "http://127.0.0.1:9/v1/webhooks/twilio"
    return {"twilio": twilio.provider_settings(url, status_callback_url=callback, timeout=5)}


@contextmanager
def fault_world(
    *, database_url: str, redis_url: str, data: Path, delay: float = 0.5, **timings: float
) -> Iterator[FaultWorld]:
    """The world, with no worker or beat yet (each scenario starts its own)."""
    cascades = data / "cascades"
    cascades.mkdir(parents=True, exist_ok=True)
    (cascades / "fault.yaml").write_text(FAULT_CASCADE)
    sim = twilio.create_app()
    with ExitStack() as stack:
        url = stack.enter_context(serve(SlowAnswers(sim, delay)))
        channels = {"sms": ["twilio"]}
        providers = twilio_providers(url)
        values = {**TIMINGS, "send_group": SEND_GROUP, **timings}
        settings = make_settings(
            database_url,
            redis_url,
            data,
            channels=channels,
            providers=providers,
            cascades_dir=cascades,
            **values,
        )
        engine = get_engine(settings.effective_database_url)
        truncate(engine)
        redis.Redis.from_url(redis_url).flushdb()
        router = build_router(settings, redis.Redis.from_url(redis_url))
        known = load_cascades(cascades, router.available_channels())
        publisher = CeleryPublisher(create_celery(settings), settings.send_group)
        runtime = Runtime(settings, known, engine, router, publisher)
        env = worker_env(settings, data / "outbox.jsonl")
        env["CASCADE_CASCADES_DIR"] = str(cascades)
        env["CASCADE_CHANNELS"] = json.dumps(channels)
        env["CASCADE_PROVIDERS"] = json.dumps(providers)
        env.update({f"CASCADE_{key.upper()}": str(value) for key, value in values.items()})
        api = stack.enter_context(TestClient(create_app(runtime), headers=AUTH))
        world = FaultWorld(runtime, api, sim, env, data, stack)
        yield world


def standard_processes(
    world: FaultWorld, concurrency: int = 4, beats: int = 1
) -> subprocess.Popen[bytes]:
    """A send worker (every channel queue) and ``beats`` beats (each runs the sweep itself,
    so a send backlog cannot starve it). The send worker is the one the scenarios break.
    All start at once (startup is the slow part on a busy machine). Returns the send worker.
    """
    sender = world.start_worker(list(QUEUES), concurrency)
    for _ in range(beats):
        world.start_beat()
    world.wait_workers()
    return sender
