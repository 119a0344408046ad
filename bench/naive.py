"""The naive API (baseline of figure 2): one SQLModel insert and one Celery publish per request.

The same uvicorn, database engine settings and Celery configuration as Cascade's API,
and nothing else: no authentication, no customer lookup, no cascade resolution.
``uvicorn --factory bench.naive:create_app`` with the same ``CASCADE_*`` environment.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import JSON, Column
from sqlmodel import Field, Session, SQLModel

from config.settings import get_settings
from dispatcher.db import get_engine
from dispatcher.queues import create_celery

QUEUE = "bench-naive"
TABLE = "bench_naive_notification"


class NaiveNotification(SQLModel, table=True):
    __tablename__ = TABLE

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True, max_length=36)
    customer_id: str = Field(max_length=128)
    cascade: str = Field(max_length=64)
    content: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state: str = Field(default="accepted", max_length=16)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class NaiveIn(BaseModel):
    customer_id: str
    cascade: str
    content: dict[str, Any]


def create_app() -> FastAPI:
    settings = get_settings()
    engine = get_engine(settings.effective_database_url)
    SQLModel.metadata.create_all(engine, tables=[SQLModel.metadata.tables[TABLE]])
    celery = create_celery(settings)
    app = FastAPI(title="naive")

    @app.post("/v1/notifications", status_code=202)
    def post(body: NaiveIn) -> dict[str, str]:
        row = NaiveNotification(
            customer_id=body.customer_id, cascade=body.cascade, content=body.content
        )
        with Session(engine) as session:
            session.add(row)
            session.commit()
            row_id = row.id
        celery.send_task("bench.naive", args=[row_id], queue=QUEUE)
        return {"id": row_id, "state": "accepted"}

    return app
