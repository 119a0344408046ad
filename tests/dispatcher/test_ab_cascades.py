"""A/B cascades on the real database: planning per variant, stop/promote without a
restart, broadcasts, and the side-by-side stats with an interval."""

from __future__ import annotations

import statistics
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from dispatcher.api.app import create_app
from dispatcher.cli import main
from dispatcher.confidence import newcombe
from dispatcher.experiments import assign
from dispatcher.models import Attempt, Notification
from dispatcher.runtime import Runtime
from dispatcher.sweep import sweep
from tests.conftest import TEST_KEY
from tests.dispatcher.test_api_errors import fields, problem
from tests.dispatcher.test_broadcasts import fan_outs
from tests.simulators.server import serve
from tests.support.clock import FakeClock
from tests.support.dispatching import Make, drain
from tests.support.scenario import put_customer, receipt, send, show

EXPERIMENTS = Path(__file__).parents[1] / "experiments"
EXPERIMENT = "push-vs-email"
WEIGHTS = [("control", 3.0), ("email_first", 1.0)]
CHANNELS = {"control": ["push", "sms"], "email_first": ["email", "sms"]}


def customers_in(variant: str, count: int, prefix: str = "c") -> list[str]:
    """The first ``count`` ids ``prefix0, prefix1, ...`` that the hash puts in ``variant``."""
    found: list[str] = []
    n = 0
    while len(found) < count:
        if assign(f"{prefix}{n}", EXPERIMENT, WEIGHTS) == variant:
            found.append(f"{prefix}{n}")
        n += 1
    return found


def rows(runtime: Runtime, ids: list[str] | None = None) -> list[Notification]:
    with Session(runtime.engine) as session:
        query = select(Notification).order_by(col(Notification.created_at))
        if ids is not None:
            query = query.where(col(Notification.id).in_(ids))
        return list(session.exec(query))


def change(api: TestClient, variant: str, action: str) -> dict[str, Any]:
    response = api.post(f"/v1/experiments/{EXPERIMENT}/variants/{variant}/{action}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_each_customer_runs_its_variants_steps(make: Make, clock: FakeClock):
    """The hash picks the variant; the notification has its steps and TTL, records the
    variant, and the same customer gets the same variant again."""
    _, api = make(cascades_dir=EXPERIMENTS)
    ids = [f"p{n}" for n in range(12)]
    for cid in ids:
        put_customer(api, cid)
    accepted = {cid: send(api, cid, cascade="ab") for cid in ids}
    again = {cid: send(api, cid, cascade="ab") for cid in ids[:4]}
    expected = {cid: assign(cid, EXPERIMENT, WEIGHTS) for cid in ids}
    assert set(expected.values()) == {"control", "email_first"}  # both are exercised
    for cid, answer in accepted.items():
        assert [s["channel"] for s in answer["steps"]] == CHANNELS[expected[cid]]
        shown = show(api, answer["id"])
        assert (shown["experiment"], shown["variant"]) == (EXPERIMENT, expected[cid])
        ttl = (60 if expected[cid] == "control" else 30) * 60
        assert shown["expires_at"] == (clock() + timedelta(seconds=ttl)).isoformat().replace(
            "+00:00", "Z"
        )
        accepted_event = next(e for e in shown["events"] if e["type"] == "accepted")
        assert accepted_event["detail"]["variant"] == expected[cid]
    for cid, answer in again.items():
        assert show(api, answer["id"])["variant"] == expected[cid]
    page = api.get(f"/stats/notifications/{accepted[ids[0]]['id']}")
    assert f"{EXPERIMENT}: {expected[ids[0]]}" in page.text


def test_cascade_without_experiment_records_no_variant(make: Make):
    _, api = make(cascades_dir=EXPERIMENTS)
    put_customer(api, "plain")
    shown = show(api, send(api, "plain", cascade="basic")["id"])
    assert (shown["experiment"], shown["variant"]) == (None, None)


def test_stop_and_promote_change_new_assignments_without_a_restart(make: Make, clock: FakeClock):
    """Stop the variant: its customers get the control at once in this process, and in
    another process once its few-second cache expires; promote: everyone gets it."""
    _, api = make(cascades_dir=EXPERIMENTS)
    _, other_api = make(cascades_dir=EXPERIMENTS)  # another API process, its own cache
    [moved] = customers_in("email_first", 1)
    [stays] = customers_in("control", 1)
    for cid in (moved, stays):
        put_customer(api, cid)
    assert show(other_api, send(other_api, moved, cascade="ab")["id"])["variant"] == "email_first"

    stopped = change(api, "email_first", "stop")
    assert {v["name"]: v["status"] for v in stopped["variants"]} == {
        "control": "active",
        "email_first": "stopped",
    }
    assert [s["channel"] for s in send(api, moved, cascade="ab")["steps"]] == ["push", "sms"]
    assert [s["channel"] for s in send(api, stays, cascade="ab")["steps"]] == ["push", "sms"]
    # The other process still trusts what it read less than five seconds ago...
    clock.advance(4)
    assert show(other_api, send(other_api, moved, cascade="ab")["id"])["variant"] == "email_first"
    # ...and sees the stop once its cache expires: no restart, no redeploy.
    clock.advance(1)
    assert show(other_api, send(other_api, moved, cascade="ab")["id"])["variant"] == "control"

    change(api, "email_first", "promote")
    for cid in (moved, stays):
        assert show(api, send(api, cid, cascade="ab")["id"])["variant"] == "email_first"
    shown = api.get(f"/v1/experiments/{EXPERIMENT}").json()
    assert [(v["name"], v["status"], v["channels"], v["order"]) for v in shown["variants"]] == [
        ("control", "active", ["push", "sms"], "static"),
        ("email_first", "promoted", ["email", "sms"], "static"),
    ]
    change(api, "email_first", "resume")
    assert show(api, send(api, stays, cascade="ab")["id"])["variant"] == "control"
    assert [e["name"] for e in api.get("/v1/experiments").json()] == [EXPERIMENT]
    assert api.get("/v1/cascades/ab").json()["experiment"] == EXPERIMENT
    assert api.get("/v1/cascades/basic").json()["experiment"] is None


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/v1/experiments/nope/variants/control/stop", 404, "name"),
        (f"/v1/experiments/{EXPERIMENT}/variants/nope/stop", 404, "variant"),
        (f"/v1/experiments/{EXPERIMENT}/variants/control/pause", 422, "action"),
    ],
)
def test_unknown_experiment_variant_or_action_names_the_field(make: Make, path, status, field):
    _, api = make(cascades_dir=EXPERIMENTS)
    assert fields(problem(api.post(path), status)) == [field]
    assert fields(problem(api.get("/v1/experiments/nope"), 404)) == ["name"]


def test_broadcast_members_get_their_variants(make: Make):
    """Fan-out (bulk COPY on PostgreSQL) assigns each member as a single send would,
    with content for the channels of every variant."""
    runtime, api = make(cascades_dir=EXPERIMENTS, broadcast_batch=4)
    ids = [f"b{n}" for n in range(10)]
    for cid in ids:
        put_customer(api, cid)
    body = {
        "cascade": "ab",
        "category": "promo",
        "content": {"title": "Sale", "text": "Everything half price"},
        "audience": {"customer_ids": ids},
    }
    assert api.post("/v1/broadcasts", json=body).status_code == 202
    fan_outs(runtime)
    made = rows(runtime)
    assert sorted(n.customer_id for n in made) == sorted(ids)
    assert {n.variant for n in made} == {"control", "email_first"}
    for notification in made:
        variant = assign(notification.customer_id, EXPERIMENT, WEIGHTS)
        assert (notification.experiment, notification.variant) == (EXPERIMENT, variant)
        assert [s["channel"] for s in notification.steps] == CHANNELS[variant]
        assert notification.content[CHANNELS[variant][0]]["text"] == "Everything half price"
    assert len(drain(runtime)) == len(ids)


def test_stats_compare_both_variants_with_an_interval(make: Make, clock: FakeClock):
    """Control: 6 customers, 3 read on push at +20 s, 1 delivered by SMS at +70 s.
    Variant: 4 customers, 2 e-mails delivered at +20 s. The stats show both variants
    side by side; the expectations are computed here from what the test did."""
    runtime, api = make(cascades_dir=EXPERIMENTS)
    start = clock()
    group = {
        "control": customers_in("control", 6, "s"),
        "email_first": customers_in("email_first", 4, "s"),
    }
    sent: dict[str, list[str]] = {}
    for variant, ids in group.items():
        for cid in ids:
            put_customer(api, cid)
        sent[variant] = [send(api, cid, cascade="ab")["id"] for cid in ids]
    drain(runtime)
    clock.advance(20)
    confirmed_after: dict[str, list[float]] = {"control": [], "email_first": []}
    for nid in sent["control"][:3]:
        receipt(api, show(api, nid)["attempts"][0]["id"], "read")
        confirmed_after["control"].append(20.0)
    for nid in sent["email_first"][:2]:
        receipt(api, show(api, nid)["attempts"][0]["id"], "delivered")
        confirmed_after["email_first"].append(20.0)
    sweep(runtime, now=clock.advance(50))  # push timed out (60 s): unread ones go to SMS
    drain(runtime)
    sms = show(api, sent["control"][3])["attempts"][1]
    assert sms["channel"] == "sms"
    receipt(api, sms["id"], "delivered")
    confirmed_after["control"].append(70.0)
    # The customer then taps one delivered e-mail (the operator reports it): read and clicked.
    receipt(api, show(api, sent["email_first"][0])["attempts"][0]["id"], "clicked")
    read = {"control": 3, "email_first": 1}
    clicked = {"control": 0, "email_first": 1}

    stats = api.get("/v1/stats", params={"since": start.isoformat()}).json()
    [experiment] = stats["experiments"]
    assert (experiment["experiment"], experiment["cascade"], experiment["control"]) == (
        EXPERIMENT,
        "ab",
        "control",
    )
    with Session(runtime.engine) as session:
        cost = {
            variant: sum(
                a.cost
                for a in session.exec(select(Attempt).where(col(Attempt.notification_id).in_(nids)))
            )
            for variant, nids in sent.items()
        }
    assert cost["control"] > 0  # the SMS sends were paid for
    got = {v["variant"]: v for v in experiment["variants"]}
    assert list(got) == ["control", "email_first"]
    for variant, nids in sent.items():
        n, c = len(nids), len(confirmed_after[variant])
        assert {k: got[variant][k] for k in _FIGURES} == {
            "weight": dict(WEIGHTS)[variant],
            "status": "active",
            "notifications": n,
            "confirmed": c,
            "confirmation_rate": round(c / n, 4),
            "read": read[variant],
            "read_rate": round(read[variant] / n, 4),
            "clicked": clicked[variant],
            "click_rate": round(clicked[variant] / n, 4),
            "median_seconds_to_confirmation": statistics.median(confirmed_after[variant]),
            "cost": round(cost[variant], 6),
            "cost_per_confirmed": round(cost[variant] / c, 6),
        }
    assert got["control"]["difference"] is None
    low, high = newcombe(2, 4, 4, 6)  # type: ignore[misc]
    assert got["email_first"]["difference"] == {
        "confirmation_rate": round(2 / 4 - 4 / 6, 4),
        "low": round(low, 4),
        "high": round(high, 4),
        "confidence": 0.95,
        "method": "newcombe-wilson",
    }
    assert (
        api.get("/v1/stats", params={"since": start.isoformat(), "cascade": "basic"}).json()[
            "experiments"
        ]
        == []
    )
    page = api.get("/stats", params={"since": "1h"}).text
    assert 'data-variant="control"' in page
    assert 'data-variant="email_first"' in page
    assert f"{(2 / 4 - 4 / 6) * 100:+.1f} pp [{low * 100:+.1f}, {high * 100:+.1f}]" in page


_FIGURES = (
    "weight",
    "status",
    "notifications",
    "confirmed",
    "confirmation_rate",
    "read",
    "read_rate",
    "clicked",
    "click_rate",
    "median_seconds_to_confirmation",
    "cost",
    "cost_per_confirmed",
)


def test_cli_stops_and_promotes_through_the_api_and_stats_prints_the_variants(
    make: Make, capsys: pytest.CaptureFixture[str]
):
    """`dispatcher experiment stop|show|promote` change the running API's variants;
    `dispatcher stats` prints both variants; a wrong variant is one clear message."""
    runtime, api = make(cascades_dir=EXPERIMENTS)
    with serve(create_app(runtime)) as url:
        options = ["--url", url, "--api-key", TEST_KEY]
        assert main(["experiment", "stop", *options, EXPERIMENT, "email_first"]) == 0
        out, _ = capsys.readouterr()
        first, header, *variants = out.splitlines()
        assert first == f"experiment {EXPERIMENT} (cascade ab, control control)"
        assert header.split()[:3] == ["variant", "weight", "status"]
        assert [line.split()[:3] for line in variants] == [
            ["control", "3", "active"],
            ["email_first", "1", "stopped"],
        ]
        assert api.get(f"/v1/experiments/{EXPERIMENT}").json()["variants"][1]["status"] == (
            "stopped"
        )
        assert main(["experiment", "promote", *options, EXPERIMENT, "control"]) == 0
        assert main(["experiment", "show", *options, EXPERIMENT]) == 0
        out, _ = capsys.readouterr()
        assert "promoted" in out.splitlines()[-2]
        assert main(["experiment", "stop", *options, EXPERIMENT, "nope"]) == 1
        _, err = capsys.readouterr()
        assert "variant: experiment 'push-vs-email' has no variant 'nope'" in err
        assert "Traceback" not in err
        put_customer(api, "cli")
        send(api, "cli", cascade="ab")
        assert main(["stats", *options, "--since", "1h"]) == 0
        out, _ = capsys.readouterr()
    section = out[out.index(f"A/B {EXPERIMENT}") :].splitlines()
    assert [line.split()[:3] for line in section[2:]] == [
        ["control", "promoted", "1"],
        ["email_first", "stopped", "0"],
    ]


THREE = """\
name: three
ttl: 1h
steps:
  - {channel: push, wait_for: read, timeout: 60s}
  - {channel: sms, wait_for: delivered, timeout: 240s}
experiment:
  variants:
    - {name: a, weight: 1}
    - {name: b, weight: 1}
    - {name: c, weight: 1}
"""


def test_concurrent_promotes_leave_one_variant_promoted(make: Make, tmp_path: Path):
    """Three API processes promote a, b and c at the same moment, again and again: every
    request succeeds and exactly one variant is promoted after each round (on PostgreSQL
    two promotes used to both read 'none promoted' and both stay promoted)."""
    cascades = tmp_path / "cascades"
    cascades.mkdir()
    (cascades / "three.yaml").write_text(THREE)
    apis = [make(cascades_dir=cascades)[1] for _ in range(3)]
    path = "/v1/experiments/three/variants/{}/{}"
    for api in apis:  # FastAPI builds a route's state on its first request: not in a race
        assert api.post(path.format("a", "resume")).status_code == 200
    outcomes = []
    for _ in range(15):

        def promote(api: TestClient, variant: str, start: threading.Barrier) -> int:
            start.wait(10)
            return int(api.post(path.format(variant, "promote")).status_code)

        with ThreadPoolExecutor(3) as pool:
            codes = list(pool.map(promote, apis, "abc", [threading.Barrier(3)] * 3))
        shown = apis[0].get("/v1/experiments/three").json()["variants"]
        outcomes.append((codes, [v["name"] for v in shown if v["status"] == "promoted"]))
        for variant in "abc":
            apis[0].post(path.format(variant, "resume"))
    assert all(codes == [200, 200, 200] and len(promoted) == 1 for codes, promoted in outcomes)
