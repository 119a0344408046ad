"""``dispatcher experiment show|stop|promote|resume``: A/B variants from a terminal.

They go through the running API (``POST /v1/experiments/...``) as any client would, so
every API process and worker sees the change within its few-second cache; nothing is
redeployed.
"""

from __future__ import annotations

import argparse
from typing import Any

from config.settings import Settings
from dispatcher.remote import api_options, connect, table

_ACTIONS = {
    "stop": "stop a variant: it gets no new customers (they get the active variants)",
    "promote": "promote a variant: every new customer gets it",
    "resume": "make a stopped or promoted variant active again with its weight",
}


def _print_experiment(experiment: dict[str, Any]) -> None:
    print(
        f"experiment {experiment['name']} (cascade {experiment['cascade']}, "
        f"control {experiment['control']})"
    )
    rows = [
        (
            v["name"],
            v["weight"],
            v["status"],
            " > ".join(v["channels"]),
            v["order"],
            v["ttl_seconds"],
        )
        for v in experiment["variants"]
    ]
    print(table(["variant", "weight", "status", "channels", "order", "ttl s"], rows))


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        _print_experiment(client.experiment(args.name))
    return 0


def cmd_change(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        _print_experiment(client.change_variant(args.name, args.variant, args.action))
    return 0


def add_commands(sub: Any) -> None:
    """Register ``experiment`` and its actions on the ``dispatcher`` parser."""
    api = api_options()
    experiment = sub.add_parser(
        "experiment",
        help="show, stop or promote A/B variants",
        description="A/B cascades: show an experiment's variants, or stop, promote or "
        "resume one through the running API (no redeploy; every process sees it within "
        "a few seconds).",
    )
    actions = experiment.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show",
        parents=[api],
        help="show an experiment's variants and statuses",
        description="Show an experiment's variants: weight, status, channels, order, TTL.",
    )
    show.add_argument("name", help="experiment name (the cascade's, unless it names one)")
    show.set_defaults(func=cmd_show)
    for action, text in _ACTIONS.items():
        change = actions.add_parser(action, parents=[api], help=text, description=text + ".")
        change.add_argument("name", help="experiment name")
        change.add_argument("variant", help="variant name")
        change.set_defaults(func=cmd_change)
