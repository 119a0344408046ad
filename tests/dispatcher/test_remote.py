"""``dispatcher send``, ``status`` and ``stats`` against the real API (uvicorn, real database)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.api.app import create_app
from dispatcher.cli import main
from dispatcher.client import CascadeClient
from dispatcher.runtime import Runtime
from tests.conftest import TEST_KEY
from tests.simulators.server import serve
from tests.support.scenario import PHONE


@pytest.fixture(name="url")
def _url(runtime: Runtime) -> Iterator[str]:
    with serve(create_app(runtime)) as url, CascadeClient(url, TEST_KEY) as client:
        client.put_customer("alice", {"contacts": [{"channel": "sms", "address": PHONE}]})
        yield url


def dispatcher(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_send_from_flags_then_status_and_stats(url: str, capsys: pytest.CaptureFixture[str]):
    """send prints the id and the steps; status shows attempts and the timeline as tables."""
    api = ["--url", url, "--api-key", TEST_KEY]
    code, out, err = dispatcher(
        capsys, "send", *api, "--customer", "alice", "--cascade", "basic", "--text", "Shipped"
    )
    assert (code, err) == (0, "")
    first, header, *steps = out.splitlines()
    notification_id, state = first.split()
    assert state == "accepted"
    assert header.split() == ["step", "channel", "wait", "for", "timeout"]
    assert [line.split() for line in steps] == [["0", "sms", "delivered", "240s"]]

    code, out, err = dispatcher(capsys, "status", *api, notification_id)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split()[:2] == [notification_id, "accepted"]
    assert lines[2].split() == [
        "step", "channel", "provider", "state", "tries", "sent", "delivered", "read"
    ]  # fmt: skip
    assert lines[3].split()[:4] == ["0", "sms", "-", "pending"]
    assert lines[5].split() == ["at", "event", "channel", "source", "detail"]
    assert lines[6].split()[2:4] == ["accepted", "-"]

    code, out, err = dispatcher(capsys, "stats", *api, "--since", "1h")
    assert (code, err) == (0, "")
    assert "1 notifications" in out.splitlines()[0]
    assert out.splitlines()[1].split()[:3] == ["channel", "sent", "delivered"]


def test_send_from_a_json_file_with_a_flag_over_it(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    """--file holds the API body; a flag given too overrides its field; same key, same id."""
    body = tmp_path / "n.json"
    body.write_text(
        json.dumps({"customer_id": "nobody", "cascade": "basic", "content": {"text": "x"}})
    )
    api = ["--url", url, "--api-key", TEST_KEY, "--idempotency-key", "cli-1"]
    code, out, _ = dispatcher(capsys, "send", *api, "--file", str(body), "--customer", "alice")
    assert code == 0
    again = dispatcher(capsys, "send", *api, "--file", str(body), "--customer", "alice")[1]
    assert again.split()[0] == out.split()[0]


def test_input_and_api_errors_are_one_clear_message(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    """A broken file names file and line; an API refusal prints its problem fields; no traceback."""
    broken = tmp_path / "broken.json"
    broken.write_text('{"customer_id": "alice",\n  "cascade": }')
    api = ["--url", url, "--api-key", TEST_KEY]
    code, _, err = dispatcher(capsys, "send", *api, "--file", str(broken))
    assert code == 2
    assert err.startswith(f"dispatcher: {broken}:2: not valid JSON")

    code, _, err = dispatcher(capsys, "send", *api, "--customer", "alice", "--cascade", "basic")
    assert code == 1
    assert err.splitlines() == [
        "dispatcher: the API answered 422 Invalid request: "
        "(body): give either 'content' or 'template' (with 'data')",
        "  (body): give either 'content' or 'template' (with 'data')",
    ]
    code, _, err = dispatcher(capsys, "send", *api, "--cascade", "basic", "--text", "x")
    assert (code, err) == (2, "dispatcher: --customer: required (or give it in --file)\n")
    code, _, err = dispatcher(capsys, "status", *api, "00000000-0000-0000-0000-000000000000")
    assert code == 1
    assert err.startswith("dispatcher: the API answered 404 Not found")


def test_unreachable_api_is_one_line(capsys: pytest.CaptureFixture[str]):
    """Nothing listens at --url: one line saying so, exit 1."""
    from tests.simulators.server import free_port

    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = dispatcher(capsys, "stats", "--url", url)
    assert code == 1
    assert err.startswith(f"dispatcher: cannot reach {url}:")
    assert "is `dispatcher api` running?" in err
    assert len(err.splitlines()) == 1


def test_stats_of_an_empty_period(url: str, capsys: pytest.CaptureFixture[str]):
    """Nothing sent yet: the totals and the table's header, no error."""
    code, out, err = dispatcher(capsys, "stats", "--url", url, "--api-key", TEST_KEY)
    assert (code, err) == (0, "")
    assert "0 notifications, cost 0, SMS only 0, saved 0" in out
    assert out.splitlines()[1].split() == [
        *("channel", "sent", "delivered", "read", "clicked", "failed"),
        *("read", "rate", "click", "rate", "cost", "finished", "here"),
    ]
