"""Health, metrics and the loaded cascades."""

from __future__ import annotations

import redis
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from kombu import Connection
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from dispatcher import metrics
from dispatcher.api.deps import ApiKeyDep, RuntimeDep
from dispatcher.api.openapi import problems
from dispatcher.api.problems import MEDIA_TYPE, RETRY_AFTER, Problem
from dispatcher.queues import QUEUES
from dispatcher.readiness import Readiness, check_broker
from dispatcher.schemas import CascadeMemberOut, CascadeOut, CascadeStepOut

router = APIRouter(tags=["system"])


@router.get("/healthz", responses=problems(503))
def healthz(runtime: RuntimeDep) -> dict[str, str]:
    """Liveness: this API process answers and reaches the database and the broker."""
    checks: dict[str, str] = {}
    try:
        with runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        redis.Redis.from_url(runtime.settings.redis_url, socket_connect_timeout=1).ping()
        checks["redis" if runtime.settings.broker_url else "broker"] = "ok"
    except Exception as exc:
        checks["redis" if runtime.settings.broker_url else "broker"] = (
            f"error: {type(exc).__name__}"
        )
    if runtime.settings.broker_url:  # a broker of its own (RabbitMQ): connect to it too
        try:
            with Connection(runtime.settings.broker_url, connect_timeout=1) as connection:
                connection.ensure_connection(max_retries=1)
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"error: {type(exc).__name__}"
    if any(v != "ok" for v in checks.values()):
        raise Problem(
            503,
            "Unhealthy",
            ", ".join(f"{k}: {v}" for k, v in checks.items()),
            headers={"Retry-After": str(RETRY_AFTER)},
        )
    return {"status": "ok", **checks}


@router.get(
    "/readyz",
    responses={503: {**problems(503)[503], "description": "Not ready: see `problems`"}},
)
def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Readiness: database, broker, the last sweep's time and live workers per queue."""
    report = Readiness()
    try:
        with runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        report.database = f"error: {type(exc).__name__}"
        report.problems.append("database unreachable")
    client = redis.Redis.from_url(
        runtime.settings.redis_url, socket_connect_timeout=1, socket_timeout=1
    )
    stale = max(10.0, runtime.settings.sweep_interval * 10)
    check_broker(report, client, QUEUES, runtime.now(), stale)
    body = report.as_json()
    if report.ready:
        return JSONResponse(body)
    # Problem JSON: "status" is the HTTP status (the readiness word is implied by the 503).
    body = {**body, "type": "about:blank", "title": "Not ready", "status": 503}
    body["detail"] = "; ".join(report.problems)
    headers = {"Retry-After": str(RETRY_AFTER)}
    return JSONResponse(body, status_code=503, media_type=MEDIA_TYPE, headers=headers)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics_page(runtime: RuntimeDep) -> Response:
    """Prometheus metrics: every process of this host, plus queue depth and overdue timers."""
    gauges = metrics.LiveGauges(runtime.engine, runtime.publisher.queue_depth, QUEUES, runtime.now)
    return Response(metrics.exposition(gauges), media_type=CONTENT_TYPE_LATEST)


def _cascade_out(runtime: RuntimeDep, name: str) -> CascadeOut:
    cascade = runtime.cascades[name]
    # Every duration in seconds, as in notifications' steps (never ISO 8601 strings).
    steps = [
        CascadeStepOut(
            channel=step.channel,
            among=[
                CascadeMemberOut(channel=m.channel, wait_for=m.wait_for or step.wait_for)
                for m in step.members()
            ]
            if step.among
            else [],
            wait_for=step.wait_for,
            timeout=step.timeout.total_seconds(),
        )
        for step in cascade.steps
    ]
    return CascadeOut(
        name=cascade.name,
        description=cascade.description,
        category=cascade.category,
        ttl=cascade.ttl.total_seconds(),
        quiet_hours=cascade.quiet_hours,
        paid_last=cascade.paid_last,
        order=cascade.order,
        steps=steps,
        experiment=cascade.experiment_name,
    )


@router.get(
    "/v1/cascades", response_model=list[CascadeOut], tags=["cascades"], responses=problems(401)
)
def list_cascades(runtime: RuntimeDep, _: ApiKeyDep) -> list[CascadeOut]:
    """The cascades loaded at startup."""
    return [_cascade_out(runtime, name) for name in sorted(runtime.cascades)]


@router.get(
    "/v1/cascades/{name}",
    response_model=CascadeOut,
    tags=["cascades"],
    responses=problems(401, 404, 422),
)
def get_cascade(name: str, runtime: RuntimeDep, _: ApiKeyDep) -> CascadeOut:
    """One loaded cascade."""
    if name not in runtime.cascades:
        raise Problem(404, "Not found", f"no cascade {name!r}")
    return _cascade_out(runtime, name)
