"""`tstore init` and `tstore db ...`."""

from __future__ import annotations

import click

from .app import Context, cli, emit_json, json_option, pass_ctx


@cli.command()
@json_option
@pass_ctx
def init(ctx: Context, as_json: bool) -> None:
    """Create a store (directory, database at the newest schema) or upgrade an existing one."""
    from ..store import init_store

    store = init_store(ctx.store_arg, db_url=ctx.db_url, chroma_url=ctx.chroma_url)
    info = {"store": str(store.dir), "database": store.db_url}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"store ready: {store.dir} (database {store.db_url})")


@cli.group()
def db() -> None:
    """The store's database schema (Alembic migrations shipped with tstore)."""


def _engine(ctx: Context):
    from ..db.engine import make_engine
    from ..store import Store

    store = Store.open(ctx.store_arg, db_url=ctx.db_url, check_schema=False)
    return store.engine


@db.command()
@pass_ctx
def upgrade(ctx: Context) -> None:
    """Upgrade the database to the newest schema."""
    from ..db import migrate

    engine = _engine(ctx)
    migrate.upgrade(engine)
    click.echo(f"database at schema {migrate.current_revision(engine)}")


@db.command()
@click.argument("revision")
@pass_ctx
def downgrade(ctx: Context, revision: str) -> None:
    """Downgrade the database to REVISION ('base' drops every table)."""
    from ..db import migrate

    engine = _engine(ctx)
    migrate.downgrade(engine, revision)
    click.echo(f"database at schema {migrate.current_revision(engine) or 'base'}")


@db.command()
@json_option
@pass_ctx
def current(ctx: Context, as_json: bool) -> None:
    """Show the database's schema revision and the newest one."""
    from ..db import migrate

    engine = _engine(ctx)
    info = {"current": migrate.current_revision(engine), "head": migrate.head_revision()}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"current {info['current'] or 'none'}, head {info['head']}")
