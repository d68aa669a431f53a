"""Alembic environment. tstore passes a live connection in `config.attributes["connection"]`."""

from alembic import context
from sqlalchemy import create_engine

from taxonomy_store.db.models import Base

target_metadata = Base.metadata


def _configure_and_run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "no connection and no sqlalchemy.url: run migrations through taxonomy_store.db.migrate"
    with create_engine(url).begin() as conn:
        _configure_and_run(conn)


if context.is_offline_mode():
    raise SystemExit("tstore migrations run online only (tstore db upgrade)")
run_migrations_online()
