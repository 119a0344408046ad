"""The rows of the stats bench (:mod:`bench.stats_scale`), generated inside PostgreSQL.

N notifications shaped like a day of real traffic (most read on push, some escalating to
messenger, e-mail and SMS, a few exhausted, expired, suppressed or still open), with their
attempts and history events, made by ``INSERT ... SELECT`` over ``generate_series``: no
row crosses the wire. Secondary indexes and constraints are dropped for the load and
made again after it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

#: Resolved cascades: (cascade, channels, wait_for, providers, timeouts, share in percent).
PLANS = """
(1, 'order_status', ARRAY['push','telegram','email','sms'],
    ARRAY['read','sent','delivered','delivered'], ARRAY['fcm','telegram','smtp','twilio'],
    ARRAY[120,900,1800,600], 45),
(2, 'order_status', ARRAY['push','telegram','email'],
    ARRAY['read','sent','delivered'], ARRAY['fcm','telegram','smtp'], ARRAY[120,900,1800], 15),
(3, 'otp', ARRAY['sms'], ARRAY['delivered'], ARRAY['smsru'], ARRAY[300], 15),
(4, 'promo', ARRAY['push','email'], ARRAY['read','delivered'], ARRAY['fcm','smtp'],
    ARRAY[3600,7200], 25)
"""

GENERATE = [
    "CREATE TEMP TABLE plan (pid int, cascade text, channels text[], waits text[], "
    "providers text[], timeouts int[], share int)",
    f"INSERT INTO plan VALUES {PLANS}",  # noqa: S608 - our constant
    "ALTER TABLE plan ADD COLUMN steps json",
    """UPDATE plan SET steps = (SELECT json_agg(json_build_object('channel', c, 'contact_id', pid,
        'wait_for', w, 'timeout', t)) FROM unnest(channels, waits, timeouts) AS s(c, w, t))""",
    # One row per notification: its plan, when it was created, and the step it finished on
    # (-1: suppressed, -2: still open, -3: exhausted, -4: expired).
    """CREATE TEMP TABLE n AS
    SELECT i, gen_random_uuid()::text AS id, p.*,
           %(now)s::timestamp - random() * interval '23 hours' AS created,
           random() AS r
    FROM generate_series(1, %(n)s) AS i
    JOIN plan AS p ON p.pid = CASE WHEN i %% 100 < 45 THEN 1 WHEN i %% 100 < 60 THEN 2
                                  WHEN i %% 100 < 75 THEN 3 ELSE 4 END""",
    """ALTER TABLE n ADD COLUMN last int""",
    """UPDATE n SET last = CASE
        WHEN r < 0.05 THEN -1 WHEN r < 0.10 THEN -2 WHEN r < 0.12 THEN -3 WHEN r < 0.13 THEN -4
        ELSE least(cardinality(channels) - 1, floor(((r - 0.13) / 0.87) ^ 2 * 4)::int) END""",
    """INSERT INTO notification (id, customer_id, cascade, steps, category, content,
        api_key_id, state, reason, respect_quiet_hours, expires_at, created_at, finished_at,
        cost, finished_channel, sms_step)
    SELECT n.id, 'c' || (n.i %% 200000), n.cascade,
        n.steps,
        'transactional', '{"push": {"title": "Parcel", "body": "Your parcel is here"}}',
        'k1',
        CASE n.last WHEN -1 THEN 'suppressed' WHEN -2 THEN 'in_progress'
            WHEN -3 THEN 'exhausted' WHEN -4 THEN 'expired' ELSE n.waits[n.last + 1] END,
        CASE WHEN n.last >= 0 THEN n.channels[n.last + 1] || '_' || n.waits[n.last + 1]
            WHEN n.last = -3 THEN 'no_confirmation' WHEN n.last = -4 THEN 'ttl'
            WHEN n.last = -1 THEN 'opted_out' END,
        true, n.created + interval '6 hours', n.created,
        CASE WHEN n.last NOT IN (-1, -2) THEN n.created + interval '1 minute' * (n.last + 2) END,
        0, CASE WHEN n.last >= 0 THEN n.channels[n.last + 1] END,
        CASE WHEN n.last = -1 THEN NULL ELSE 'sms' = ANY(n.channels) END
    FROM n""",
    # Attempts 0..k of each notification that was sent at all.
    """CREATE TEMP TABLE a AS
    SELECT gen_random_uuid()::text AS aid, n.id, n.i, n.created AS ncreated,
        n.cascade AS ncascade, s AS step, n.channels[s + 1] AS channel,
        n.providers[s + 1] AS provider, n.waits[s + 1] AS wait_for, n.timeouts[s + 1] AS timeout,
        n.created + interval '1 minute' * s AS at, random() AS r, n.last,
        CASE WHEN n.last >= 0 THEN n.last WHEN n.last = -2 THEN 0
            WHEN n.last = -4 THEN least(1, cardinality(n.channels) - 1)
            ELSE cardinality(n.channels) - 1 END AS final
    FROM n, generate_series(0, 3) AS s
    WHERE n.last <> -1 AND s < cardinality(n.channels)
      AND s <= CASE WHEN n.last >= 0 THEN n.last WHEN n.last = -2 THEN 0
          WHEN n.last = -4 THEN least(1, cardinality(n.channels) - 1)
          ELSE cardinality(n.channels) - 1 END""",
    """CREATE TEMP TABLE a2 AS SELECT a.*,
        a.step = a.final AND a.last >= 0 AS confirmed,
        a.r < 0.04 AND NOT (a.step = a.final AND a.last >= 0) AS rejected,
        a.at + interval '1 second' * (1 + a.r * 5) AS sent,
        a.at + interval '1 second' * (5 + a.r * 60) AS delivered,
        a.at + interval '1 second' * (20 + a.r * 100) AS read
    FROM a""",
    """INSERT INTO attempt (id, notification_id, step, channel, provider, wait_for,
        timeout_seconds, state, idempotency_key, provider_message_id, due_at, published_at,
        claimed_at, sent_at, delivered_at, read_at, escalate_at, finished_at, tries, cost,
        error_code, created_at, notification_created_at, cascade)
    SELECT aid, id, step, channel, CASE WHEN provider = 'twilio' AND i %% 3 = 0 THEN 'smsru'
            ELSE provider END,
        wait_for, timeout,
        CASE WHEN rejected THEN 'escalated' WHEN confirmed THEN wait_for
            WHEN last = -2 THEN 'sent' ELSE 'escalated' END,
        gen_random_uuid()::text, CASE WHEN NOT rejected THEN aid END, at, at, at,
        CASE WHEN NOT rejected THEN sent END,
        CASE WHEN confirmed AND wait_for IN ('delivered', 'read') THEN delivered
            WHEN NOT rejected AND NOT confirmed AND channel IN ('email', 'sms') AND r < 0.7
            THEN delivered END,
        CASE WHEN confirmed AND wait_for = 'read' THEN read
            WHEN NOT rejected AND NOT confirmed AND channel = 'push' AND r > 0.97 THEN read END,
        sent + interval '1 second' * timeout,
        CASE WHEN last <> -2 THEN at + interval '1 minute' END, 1,
        CASE WHEN channel = 'sms' AND NOT rejected THEN 0.05 ELSE 0 END,
        CASE WHEN rejected THEN 'invalid_recipient' END, at, ncreated, ncascade
    FROM a2""",
    "UPDATE notification SET cost = s.cost FROM (SELECT notification_id, sum(cost) AS cost "
    "FROM attempt GROUP BY notification_id HAVING sum(cost) > 0) AS s "
    "WHERE s.notification_id = notification.id",
    # History: accepted (or suppressed), per attempt queued + sent/failed + receipts +
    # escalated / late_receipt, and finished.
    """INSERT INTO event (notification_id, attempt_id, customer_id, type, channel, at,
        source, detail)
    SELECT id, NULL, 'c' || (i %% 200000), t, NULL, created, 'api', '{}'
    FROM n, unnest(CASE WHEN last = -1 THEN ARRAY['accepted', 'suppressed']
        ELSE ARRAY['accepted'] END) AS t""",
    """INSERT INTO event (notification_id, attempt_id, customer_id, type, channel, at,
        source, detail)
    SELECT a.notification_id, a.id, 'c' || (a.notification_id), t, a.channel, a.created_at,
        'worker', '{"provider": "fcm"}'
    FROM attempt AS a, LATERAL unnest(ARRAY['queued',
        CASE WHEN a.sent_at IS NULL THEN 'failed' ELSE 'sent' END]
        || CASE WHEN a.delivered_at IS NOT NULL THEN ARRAY['delivered'] ELSE '{}' END
        || CASE WHEN a.read_at IS NOT NULL THEN ARRAY['read'] ELSE '{}' END
        || CASE WHEN a.state = 'escalated' THEN ARRAY['escalated'] ELSE '{}' END
        || CASE WHEN a.state = 'escalated' AND a.read_at IS NOT NULL
            THEN ARRAY['late_receipt'] ELSE '{}' END) AS t""",
    """INSERT INTO event (notification_id, attempt_id, customer_id, type, channel, at,
        source, detail)
    SELECT n.id, a.id, n.customer_id, 'finished', a.channel, n.finished_at, 'worker',
        json_build_object('state', n.state, 'reason', n.reason, 'cancelled_attempts', 0)
    FROM notification AS n
    LEFT JOIN attempt AS a ON a.notification_id = n.id AND n.finished_channel IS NOT NULL
        AND a.channel = n.finished_channel
    WHERE n.finished_at IS NOT NULL""",
]


def _drop_secondary(conn: psycopg.Connection[Any]) -> list[str]:
    """Drop constraints (but primary keys) and indexes for the load; return how to restore."""
    constraints = conn.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid::regclass::text IN ('notification', 'attempt', 'event') "
        "AND contype <> 'p'"
    ).fetchall()
    for table, name, _ in constraints:
        conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes "
        "WHERE tablename IN ('notification', 'attempt', 'event') AND indexname NOT LIKE '%%pkey'"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    return [definition for _, definition in indexes] + [
        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
        for table, name, definition in constraints
    ]


def fill(conn: psycopg.Connection[Any], n: int, now: datetime) -> None:
    """Generate ``n`` notifications (with attempts and events) created up to ``now``."""
    restore = _drop_secondary(conn)
    for sql in GENERATE + restore:
        conn.execute(sql, {"n": n, "now": now.replace(tzinfo=None)})
