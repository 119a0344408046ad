"""Alembic environment: the URL comes from the caller (``dispatcher migrate``)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import dispatcher.models  # noqa: F401 - registers the tables
from dispatcher.db import make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url") or ""
connectable = config.attributes.get("connection")

if connectable is None:
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=SQLModel.metadata,
            render_as_batch=engine.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
else:
    context.configure(connection=connectable, target_metadata=SQLModel.metadata)
    with context.begin_transaction():
        context.run_migrations()
