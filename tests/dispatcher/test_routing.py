"""The router: which configured provider gets which address, and closing what it opened."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from config.cascade_files import load_cascades
from dispatcher.api.app import create_app
from dispatcher.dispatch import send_attempt
from dispatcher.health import ProviderHealth
from dispatcher.publisher import RecordingPublisher
from dispatcher.routing import Router, RoutingError
from dispatcher.runtime import Runtime, build_router
from providers.apns import ApnsProvider
from providers.base import Channel
from tests.conftest import AUTH, make_settings
from tests.simulators import apns, fcm, webpush
from tests.support.clock import FakeClock
from tests.support.scenario import EMAIL, put_customer, send, show

NOW = datetime(2025, 1, 1, tzinfo=UTC)
APNS_TOKEN = "0f" * 32
FCM_TOKEN = "cR1rXv8YTk2yX3Q0q7bPjS:APA91bH" + "x_-9" * 35


def push_settings() -> dict[str, dict[str, Any]]:
    key = apns.make_key()
    account = fcm.make_service_account()
    return {
        "fcm": {"service_account_json": account.key_json("https://oauth.test/token")},
        "apns": {
            "team_id": key.team_id,
            "key_id": key.key_id,
            "private_key": key.private_key_pem,
            "topic": "com.example.shop",
        },
        "webpush": {
            "vapid_private_key": _vapid_pem(),
            "vapid_subject": "mailto:ops@example.test",
        },
    }


def _vapid_pem() -> str:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


@pytest.fixture(name="make_router")
def _make_router() -> Iterator[Any]:
    routers: list[Router] = []

    def make(push: list[str]) -> Router:
        settings = push_settings()
        router = Router(
            channels={Channel.PUSH: push},
            provider_settings={name: settings[name] for name in push},
            sandbox=None,
            client=httpx.Client(),
            health=ProviderHealth(None),
        )
        routers.append(router)
        return router

    yield make
    for router in routers:
        router.close()


def names(router: Router, recipient: str) -> list[str]:
    return [p.name for p in router.candidates(Channel.PUSH, recipient, NOW, "seed")]


def test_push_addresses_go_to_the_provider_that_can_send_them(make_router: Any) -> None:
    """FCM, APNs and Web Push on one channel: each address has exactly one taker."""
    router = make_router(["fcm", "apns", "webpush"])
    subscription = webpush.create_app().webpush.subscribe("https://push.test", "b1").as_json()
    assert names(router, APNS_TOKEN) == ["apns"]
    assert names(router, APNS_TOKEN.upper()) == ["apns"]
    assert names(router, FCM_TOKEN) == ["fcm"]
    assert names(router, subscription) == ["webpush"]


def test_apns_first_in_the_list_still_leaves_fcm_tokens_to_fcm(make_router: Any) -> None:
    """Priority order does not matter: the address decides between FCM and APNs."""
    router = make_router(["apns", "fcm"])
    assert names(router, FCM_TOKEN) == ["fcm"]
    assert names(router, APNS_TOKEN) == ["apns"]


def test_apns_token_without_apns_configured_has_no_provider(make_router: Any) -> None:
    """FCM alone never gets an APNs token (it would call the contact invalid): no provider."""
    router = make_router(["fcm"])
    assert names(router, APNS_TOKEN) == []
    assert names(router, FCM_TOKEN) == ["fcm"]


def test_apns_is_a_known_push_provider() -> None:
    """``CASCADE_CHANNELS__PUSH='["apns"]'`` is valid; APNs on another channel is not."""
    from dispatcher.routing import parse_routes

    assert [r.provider for r in parse_routes({Channel.PUSH: ["apns"]})[Channel.PUSH]] == ["apns"]
    with pytest.raises(RoutingError, match="apns serves push"):
        parse_routes({Channel.SMS: ["apns"]})


def test_close_closes_the_providers_own_clients(make_router: Any) -> None:
    """APNs opens its own HTTP/2 client; closing the router closes it with the shared one."""
    router = make_router(["fcm", "apns"])
    provider = router.provider("apns")
    assert isinstance(provider, ApnsProvider)
    own = provider._client  # the HTTP/2 client APNs built for itself
    assert not own.is_closed
    router.close()
    assert own.is_closed
    assert router._client.is_closed
    router.close()  # a second close (runtime shutdown after a test's cleanup) is harmless


def test_worker_process_shutdown_closes_its_runtime(make_router: Any) -> None:
    """The worker's shutdown signal closes the process's runtime, and with it APNs' client."""
    import os
    from typing import cast

    from dispatcher import worker
    from dispatcher.runtime import Runtime

    router = make_router(["apns"])
    own = router.provider("apns")._client
    unused = cast(Any, None)
    worker._runtime[os.getpid()] = Runtime(unused, {}, unused, router, unused)
    worker.close_runtime()
    assert own.is_closed
    assert os.getpid() not in worker._runtime
    worker.close_runtime()  # nothing built: nothing to close


def test_apns_token_with_fcm_only_fails_the_step_and_keeps_the_contact(
    database_url: str, redis_url: str, tmp_path: Path, db_engine: Engine, clock: FakeClock
) -> None:
    """Push served by FCM alone, an iPhone's APNs token: nothing is sent to FCM (which would
    call the token invalid); the step fails with no_provider, the next step goes at once,
    and the contact stays active for when APNs is configured."""
    settings = make_settings(
        database_url,
        redis_url,
        tmp_path,
        channels={"push": ["fcm"]},
        # An unreachable FCM: a call to it would fail loudly (not sent), not silently pass.
        providers={"fcm": {"base_url": "http://127.0.0.1:9", **push_settings()["fcm"]}},
    )
    router = build_router(settings, None)
    cascades = load_cascades(settings.cascades_dir, router.available_channels())
    runtime = Runtime(settings, cascades, db_engine, router, RecordingPublisher(), clock)
    with TestClient(create_app(runtime), headers=AUTH) as api:
        contacts = [
            {"channel": "push", "address": APNS_TOKEN},
            {"channel": "email", "address": EMAIL},
        ]
        put_customer(api, "iphone", contacts=contacts)
        nid = send(api, "iphone")["id"]
        publisher = runtime.publisher
        assert isinstance(publisher, RecordingPublisher)
        (first,) = [b.attempt_id for b in publisher.published]
        publisher.published.clear()
        assert send_attempt(runtime, first) == "failed"
        view = show(api, nid)
        push = view["attempts"][0]
        assert (push["channel"], push["provider"], push["error_code"]) == (
            "push",
            None,
            "no_provider",
        )
        assert [a["channel"] for a in view["attempts"]] == ["push", "email"]
        (push_contact,) = [
            c for c in api.get("/v1/customers/iphone").json()["contacts"] if c["channel"] == "push"
        ]
        assert push_contact["status"] == "active"
    router.close()


def test_every_button_provider_gets_its_own_ack_key() -> None:
    """The router derives each messenger's button key from the receipt secret: set, and
    different per provider (one provider's MAC never verifies on another)."""
    router = Router(
        channels={},
        provider_settings={
            "telegram": {"token": "1:tg"},
            "viber": {"auth_token": "viber-token"},
            "vk": {"access_token": "vk-token"},
            "whatsapp": {"phone_number_id": "1", "access_token": "wa-token"},
        },
        sandbox=None,
        client=httpx.Client(),
        health=ProviderHealth(None),
        receipt_secret="receipt-secret",
    )
    try:
        keys = {
            name: router.provider(name).config.ack_key.get_secret_value()
            for name in ("telegram", "viber", "vk", "whatsapp")
        }
    finally:
        router.close()
    assert len(set(keys.values())) == 4
    assert "receipt-secret" not in keys.values()


def test_channel_providers_name_the_routes_or_the_sandbox(tmp_path: Path, redis_url: str):
    settings = make_settings(
        "sqlite://", redis_url, tmp_path, channels={"push": ["fcm"]}, providers=push_settings()
    )
    router = build_router(settings, None)
    assert router.channel_providers(Channel.PUSH) == ["fcm"]
    assert router.channel_providers(Channel.SMS) == ["sandbox"]
