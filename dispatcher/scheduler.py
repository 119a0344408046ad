"""``dispatcher beat``: the sweep's own process, one leader at a time.

The sweep runs here, in its own process, on its own clock: it never queues behind
a backlog of sends (a sweep message in the workers' queues would wait, or expire,
exactly when escalations matter most), and a tick that found nothing leaves no
trace in Flower or the logs.

Cadence: a full pass every ``CASCADE_SWEEP_INTERVAL`` seconds, counted from the start
of the previous one (so a slow pass does not push every timer later); a pass that
escalated a full batch is followed at once by the next; and in between, beat wakes
when the earliest live timer falls due and escalates only the timers, so an escalation
waits for its timer, not for the next full pass.

Several beats may run (a standby on another host): a lease in Redis (``SET NX PX``,
renewed by its holder only) lets exactly one sweep. Every change the sweep makes
is a compare-and-set, so if Redis cannot be reached each beat sweeps anyway:
correctness never depended on the lease, only efficiency.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid

import redis

from dispatcher.readiness import mark_swept
from dispatcher.runtime import Runtime
from dispatcher.sweep import SweepReport, escalate_due, next_timer, sweep

log = logging.getLogger(__name__)
#: Shortest sleep between two passes: a timer already due waits at least this long.
MIN_PAUSE = 0.05

#: Acquire the lease if free, renew it if ours; 1 when held by us afterwards.
_HOLD = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class Lease:
    """A leader lease in Redis: held by one token at a time, expiring unless renewed."""

    def __init__(self, client: redis.Redis, key: str, ttl: float) -> None:
        self._client = self.client = client
        self._key = key
        self._ttl_ms = max(1, int(ttl * 1000))
        self.token = str(uuid.uuid4())

    def hold(self) -> bool:
        """Take or renew the lease; True while this holder leads."""
        return bool(self._client.eval(_HOLD, 1, self._key, self.token, self._ttl_ms))

    def release(self) -> None:
        self._client.eval(_RELEASE, 1, self._key, self.token)


def _busy(report: SweepReport) -> dict[str, int]:
    counts = {
        "expired": report.expired,
        "escalated": report.escalated,
        "stale": report.stale,
        "republished": report.republished,
        "receipts": report.receipts,
        "fan_outs": report.fan_outs,
    }
    return {name: value for name, value in counts.items() if value}


class Scheduler:
    """Runs :func:`sweep` every ``interval`` seconds while it holds the lease."""

    def __init__(self, rt: Runtime, lease: Lease, interval: float) -> None:
        self.rt = rt
        self.lease = lease
        self.interval = interval
        self.leading: bool | None = None

    def tick(self) -> SweepReport | None:
        """One tick: hold the lease, then sweep if leading. None when standing by."""
        try:
            leading = self.lease.hold()
        except (redis.RedisError, OSError):
            leading = True  # every change is a compare-and-set: sweeping twice is safe
            if self.leading is not True:
                log.warning("Redis unreachable: sweeping without the lease")
        if leading != self.leading:
            log.info("sweeping" if leading else "standing by: another beat sweeps")
            self.leading = leading
        if not leading:
            return None
        report = sweep(self.rt)
        with contextlib.suppress(redis.RedisError, OSError):  # readiness only
            mark_swept(self.lease.client, self.rt.now())
        busy = _busy(report)
        if busy:
            log.info("sweep %s", busy)
        return report

    def timers(self) -> int:
        """Between full passes, while leading: escalate the timers that fell due."""
        return escalate_due(self.rt) if self.leading else 0

    def pause(self, next_full: float) -> float:
        """Seconds to sleep: until the next full pass, or the next timer if that is sooner."""
        until_full = max(0.0, next_full - time.monotonic())
        if not self.leading or until_full <= MIN_PAUSE:
            return until_full
        due = next_timer(self.rt)
        if due is None:
            return until_full
        until_due = (due - self.rt.now()).total_seconds()
        return min(until_full, max(MIN_PAUSE, until_due))

    def run(self, stop: threading.Event) -> None:
        """A full pass every ``interval`` (at once again if it left due timers behind); in
        between, wake when the next timer falls due and escalate just the timers."""
        next_full = time.monotonic()
        while not stop.is_set():
            try:
                if time.monotonic() >= next_full:
                    started = time.monotonic()
                    report = self.tick()
                    more = report is not None and report.escalated >= self.rt.settings.sweep_batch
                    next_full = time.monotonic() if more else started + self.interval
                else:
                    self.timers()
                pause = self.pause(next_full)
            except Exception as exc:  # the database is away: try again next tick
                log.warning("sweep failed", extra={"error": type(exc).__name__})
                pause = max(0.0, next_full - time.monotonic()) or self.interval
                next_full = time.monotonic() + pause
            stop.wait(pause)
        with contextlib.suppress(redis.RedisError, OSError):
            self.lease.release()


def build(rt: Runtime) -> Scheduler:
    client = redis.Redis.from_url(rt.settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    ttl = max(5.0, rt.settings.sweep_interval * 5)
    return Scheduler(rt, Lease(client, "cascade:sweep-leader", ttl), rt.settings.sweep_interval)
