"""``dispatcher send``, ``status`` and ``stats``: the running API from a terminal.

They talk to the API over HTTP with :class:`dispatcher.client.CascadeClient`, as any
client would: ``--url`` (default: this host's API) and ``--api-key`` (default: the
first of ``CASCADE_API_KEYS``, or the local dev key).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from config.settings import Settings
from dispatcher.client import CascadeClient


class InputError(Exception):
    """A command-line input is wrong; the message names the file or option."""


def default_url(settings: Settings) -> str:
    """This host's API: the bind address, with a wildcard replaced by loopback."""
    host = settings.api_host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - compared, not bound
        host = "127.0.0.1"
    return f"http://{host}:{settings.api_port}"


def connect(args: argparse.Namespace, settings: Settings) -> CascadeClient:
    url = args.url or default_url(settings)
    keys = settings.effective_api_keys
    key = args.api_key or (keys[0] if keys else "")
    if not key:
        raise InputError("--api-key: no API key given and CASCADE_API_KEYS is empty")
    # A refused connection is reported at once (is the API running?); a 503 is retried.
    return CascadeClient(url, key, retries=2, retry_connect=False)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table, columns as wide as their widest cell."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _body_from_file(path: str) -> dict[str, Any]:
    try:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(body, dict):
        raise InputError(f"{path}: expected a JSON object (the body of POST /v1/notifications)")
    return body


def _data(pairs: Sequence[str]) -> dict[str, str]:
    data = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--data: expected KEY=VALUE, got {pair!r}")
        data[key] = value
    return data


def send_body(args: argparse.Namespace) -> dict[str, Any]:
    """The request body: the JSON file (if any), then each flag given over it."""
    body = _body_from_file(args.file) if args.file else {}
    flags = {
        "customer_id": args.customer,
        "cascade": args.cascade,
        "category": args.category,
        "template": args.template,
        "ttl": args.ttl,
    }
    body.update({k: v for k, v in flags.items() if v is not None})
    if args.text is not None or args.title is not None:
        content = dict(body.get("content") or {})
        content.update({k: v for k, v in (("text", args.text), ("title", args.title)) if v})
        body["content"] = content
    if args.data:
        body["data"] = {**(body.get("data") or {}), **_data(args.data)}
    for name, option in (("customer_id", "--customer"), ("cascade", "--cascade")):
        if name not in body:
            raise InputError(f"{option}: required (or give it in --file)")
    return body


def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    body = send_body(args)
    with connect(args, settings) as client:
        accepted = client.send_body(body, idempotency_key=args.idempotency_key)
    print(f"{accepted.id}  {accepted.state}" + (f" ({accepted.reason})" if accepted.reason else ""))
    steps = [(s.step, s.channel, s.wait_for, f"{s.timeout:g}s") for s in accepted.steps]
    if steps:
        print(table(["step", "channel", "wait for", "timeout"], steps))
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        shown = client.get(args.id)
    print(
        f"{shown.id}  {shown.state}  customer {shown.customer_id}  cascade {shown.cascade}  "
        f"cost {shown.cost:g}"
    )
    print()
    attempts = [
        (a.step, a.channel, a.provider, a.state, a.tries, a.sent_at, a.delivered_at, a.read_at)
        for a in shown.attempts
    ]
    print(
        table(
            ["step", "channel", "provider", "state", "tries", "sent", "delivered", "read"], attempts
        )
    )
    print()
    events = [(e.at, e.type, e.channel, e.source, e.detail or None) for e in shown.events]
    print(table(["at", "event", "channel", "source", "detail"], events))
    return 0


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "rebuild":
        from dispatcher.db import get_engine
        from dispatcher.rollup_ledger import rebuild_all

        rebuild_all(get_engine(settings.effective_database_url))
        print("dispatcher: stats rollup rebuilt from the notifications and attempts")
        return 0
    with connect(args, settings) as client:
        stats = client.stats(since=args.since, cascade=args.cascade)
    print(
        f"{stats['since']} .. {stats['until']}: {stats['notifications']} notifications, "
        f"cost {stats['cost']:g}, SMS only {stats['sms_only_cost']:g}, saved {stats['saved']:g}"
    )
    columns = [
        "channel",
        "sent",
        "delivered",
        "read",
        "clicked",
        "failed",
        "read_rate",
        "click_rate",
        "cost",
        "finished_here",
    ]
    rows = [[row.get(c) for c in columns] for row in stats["channels"]]
    print(table([c.replace("_", " ") for c in columns], rows))
    print_experiments(stats.get("experiments", []))
    return 0


def api_options() -> argparse.ArgumentParser:
    """``--url`` and ``--api-key``: the parent parser of every command that calls the API."""
    api = argparse.ArgumentParser(add_help=False)
    api.add_argument("--url", help="the API's base URL (default: this host's API)")
    api.add_argument("--api-key", help="API key (default: the first of CASCADE_API_KEYS)")
    return api


def _difference(value: dict[str, Any] | None) -> str | None:
    if value is None:
        return None
    points = [value[k] * 100 for k in ("confirmation_rate", "low", "high")]
    return "{:+.1f}pp [{:+.1f}, {:+.1f}]".format(*points)


def print_experiments(experiments: Sequence[dict[str, Any]]) -> None:
    """The A/B section of ``dispatcher stats``: each experiment's variants side by side."""
    columns = ["notifications", "confirmed", "confirmation_rate", "read_rate", "click_rate"]
    more = ["median_seconds_to_confirmation", "cost_per_confirmed"]
    for experiment in experiments:
        print()
        print(f"A/B {experiment['experiment']} (control {experiment['control']})")
        rows = [
            [v["variant"], v["status"], *(v[c] for c in columns), _difference(v["difference"])]
            + [v[c] for c in more]
            for v in experiment["variants"]
        ]
        headers = [
            "variant",
            "status",
            "notifications",
            "confirmed",
            "rate",
            "read rate",
            "click rate",
        ]
        print(table([*headers, "vs control (95% CI)", "median s", "cost/confirmed"], rows))


def add_commands(sub: Any) -> None:
    """Register ``send``, ``status`` and ``stats`` on the ``dispatcher`` parser."""
    api = api_options()

    send = sub.add_parser(
        "send",
        parents=[api],
        help="send a notification through the API",
        description="Send a notification: from flags, or from a JSON file holding the body "
        "of POST /v1/notifications (flags given as well override its fields).",
    )
    send.add_argument("--file", help="JSON file with the request body")
    send.add_argument("--customer", help="customer id")
    send.add_argument("--cascade", help="cascade name (see `dispatcher cascades check`)")
    send.add_argument("--text", help="message text")
    send.add_argument("--title", help="message title (push, e-mail subject)")
    send.add_argument("--template", help="template name of the cascade, instead of --text")
    send.add_argument(
        "--data", action="append", default=[], metavar="KEY=VALUE", help="template variable"
    )
    send.add_argument("--category", help="category (opt-outs and frequency caps)")
    send.add_argument("--ttl", help="time to live: 900, 15m, 6h or PT10M")
    send.add_argument("--idempotency-key", help="default: a new UUID (retries reuse it)")
    send.set_defaults(func=cmd_send)

    status = sub.add_parser(
        "status",
        parents=[api],
        help="show a notification's attempts and timeline",
        description="Show one notification: its state, attempts and history as tables.",
    )
    status.add_argument("id", help="notification id")
    status.set_defaults(func=cmd_status)

    stats = sub.add_parser(
        "stats",
        parents=[api],
        help="show delivery statistics per channel",
        description="Per channel: sent, delivered, read, failed, read rate, cost; money saved "
        "against sending every notification by SMS. `dispatcher stats rebuild` recomputes "
        "the stats rollup from the rows, on the database (not through the API).",
    )
    stats.add_argument(
        "action", nargs="?", choices=["rebuild"], help="rebuild: recompute the stats rollup"
    )
    stats.add_argument("--since", default="24h", help="a span back from now (1h, 7d) or a time")
    stats.add_argument("--cascade", help="only this cascade")
    stats.set_defaults(func=cmd_stats)
