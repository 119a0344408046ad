"""Figures 2 and 3: ``POST /v1/notifications`` under load, Cascade against a naive API.

Both run as their own uvicorn process with the same flags, database and Redis; the
same load generator (64 keep-alive connections, a separate process) drives both for
the same time. The naive app inserts one row and publishes one message per request.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import httpx

from bench.loadgen import LoadConfig, LoadResult, run_load
from bench.naive import TABLE
from bench.stack import KEY, Stack
from bench.table import Row

CUSTOMERS = 64
AUTH = {"Authorization": f"Bearer {KEY}"}


def customer(i: int) -> str:
    return f"bench-{i}"


def seed_customers(port: int, n: int = CUSTOMERS) -> None:
    """Customers with a push and an SMS contact, through Cascade's own API."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=30) as client:
        for i in range(n):
            contacts = [
                {"channel": "push", "address": f"fcm-bench-token-{i:06d}-abcdefghijklmnopqrstuv"},
                {"channel": "sms", "address": f"+1415555{2000 + i:04d}"},
            ]
            response = client.put(f"/v1/customers/{customer(i)}", json={"contacts": contacts})
            response.raise_for_status()


def bodies() -> list[str]:
    return [
        json.dumps(
            {
                "customer_id": customer(i),
                "cascade": "bench",
                "content": {"title": "Bench", "text": "Your order has shipped"},
            }
        )
        for i in range(CUSTOMERS)
    ]


def load(port: int, duration: float = 0.0, total: int = 0) -> LoadResult:
    """``duration`` seconds measured after a warm-up of a quarter of it, or ``total`` requests."""
    config = LoadConfig(
        port=port,
        path="/v1/notifications",
        bodies=bodies(),
        connections=64,
        duration=duration,
        warmup=duration / 4,
        total=total,
        headers=AUTH,
    )
    return run_load(config)


@dataclass
class Intake:
    naive: LoadResult
    cascade: LoadResult


def naive_api(stack: Stack, duration: float) -> LoadResult:
    argv = [sys.executable, "-m", "uvicorn", "bench.naive:create_app", "--factory"]
    argv += ["--host", "127.0.0.1", "--port", "{port}", "--log-level", "info", "--proxy-headers"]
    port, process = stack.http_server("naive-api", argv, stack.env())
    try:
        return load(port, duration)
    finally:
        stack.stop(process)
        stack.flush_redis()
        with stack.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")


def measure(stack: Stack, cascade_port: int, duration: float) -> Intake:
    """Naive first, then Cascade (whose notifications figure 4 then delivers)."""
    naive = naive_api(stack, duration)
    cascade = load(cascade_port, duration)
    return Intake(naive, cascade)


def rows(backend: str, intake: Intake) -> list[Row]:
    naive, cascade = intake.naive, intake.cascade

    def latency(r: LoadResult) -> str:
        errors = f", {r.errors} errors {r.statuses}" if r.errors else ""
        return f"p50 {r.p50_ms:,.0f} ms, p99 {r.p99_ms:,.0f} ms{errors}"

    return [
        Row(
            "2/3",
            "API `POST /v1/notifications`, 64 connections",
            backend,
            "naive FastAPI: 1 insert + 1 publish",
            naive.rps,
            cascade.rps,
            "rps",
            "≥ 1.0x",
            f"Cascade {latency(cascade)}; naive {latency(naive)}",
        ),
        Row(
            "3",
            "API p99 ÷ p50 (Cascade)",
            backend,
            "p50",
            cascade.p50_ms,
            cascade.p99_ms,
            "ms",
            "≤ 3x",
        ),
    ]
