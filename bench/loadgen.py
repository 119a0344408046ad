"""The HTTP load generator: its own process, one thread, asyncio, keep-alive connections.

It speaks just enough HTTP/1.1 over raw asyncio streams to stay cheap (httpx would
cost the measured system a core on this machine), and reports its own CPU use so
the table can say how much of the machine it took. Run by :func:`run_load`; by hand:
``python -m bench.loadgen '<json config>'``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from itertools import count
from typing import Any


@dataclass
class LoadConfig:
    port: int
    path: str
    bodies: list[str]  #: request i sends bodies[i % len(bodies)]
    connections: int = 64
    duration: float = 10.0  #: seconds measured, when ``total`` is 0
    warmup: float = 0.0  #: seconds of load before that, not measured
    total: int = 0  #: send exactly this many requests instead
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LoadResult:
    requests: int
    errors: int  #: non-2xx answers and broken connections
    elapsed: float
    rps: float  #: 2xx answers per second
    p50_ms: float
    p99_ms: float
    cpu_cores: float  #: CPU seconds of the generator per wall second
    statuses: dict[str, int]


def _request(config: LoadConfig, body: str) -> bytes:
    data = body.encode()
    head = [
        f"POST {config.path} HTTP/1.1",
        f"Host: 127.0.0.1:{config.port}",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        *(f"{k}: {v}" for k, v in config.headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


async def _response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        await reader.readexactly(length)
        return status
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return status


class _Run:
    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.requests = [_request(config, body) for body in config.bodies]
        self.numbers = count()
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.errors = 0
        self.ok = 0
        self.deadline = 0.0
        self.measured_from = 0.0

    def next_request(self) -> bytes | None:
        n = next(self.numbers)
        if self.config.total and n >= self.config.total:
            return None
        if not self.config.total and time.perf_counter() >= self.deadline:
            return None
        return self.requests[n % len(self.requests)]

    async def connection(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.config.port)
        try:
            while (request := self.next_request()) is not None:
                started = time.perf_counter()
                try:
                    writer.write(request)
                    status = await _response(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    self.errors += started >= self.measured_from
                    self.statuses["broken"] = self.statuses.get("broken", 0) + 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.config.port)
                    continue
                if started < self.measured_from:
                    continue  # warm-up
                self.latencies.append(time.perf_counter() - started)
                self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
                if 200 <= status < 300:
                    self.ok += 1
                else:
                    self.errors += 1
        finally:
            writer.close()

    async def run(self) -> LoadResult:
        began = time.perf_counter()
        self.measured_from = began + self.config.warmup
        self.deadline = self.measured_from + self.config.duration
        tasks = [asyncio.create_task(self.connection()) for _ in range(self.config.connections)]
        await asyncio.sleep(self.config.warmup)
        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        latencies = sorted(self.latencies)
        done = len(latencies)

        def pct(p: float) -> float:
            return latencies[min(done - 1, int(p * done))] * 1000 if done else 0.0

        return LoadResult(
            requests=done,
            errors=self.errors,
            elapsed=elapsed,
            rps=self.ok / elapsed if elapsed else 0.0,
            p50_ms=pct(0.50),
            p99_ms=pct(0.99),
            cpu_cores=(time.process_time() - cpu) / elapsed if elapsed else 0.0,
            statuses=self.statuses,
        )


def run_load(config: LoadConfig) -> LoadResult:
    """Run the generator in a separate process and return what it measured."""
    output = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", json.dumps(asdict(config))],
        check=True,
        capture_output=True,
        text=True,
        timeout=config.duration + 600,
    ).stdout
    return LoadResult(**json.loads(output.strip().splitlines()[-1]))


def main(argv: list[str]) -> None:
    config = LoadConfig(**json.loads(argv[0]))
    result: Any = asyncio.run(_Run(config).run())
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main(sys.argv[1:])
