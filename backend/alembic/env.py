"""Alembic environment: migrations run on the engine the app hands over, or on DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, create_engine

from api.core.config import get_settings
from api.models import Base

target_metadata = Base.metadata


def run_migrations() -> None:
    engine: Engine | None = context.config.attributes.get("engine")
    if engine is None:
        engine = create_engine(get_settings().database_url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations()
