"""`tstore init` and `tstore db upgrade|downgrade|current|stamp`: the store and its schema."""

from __future__ import annotations

import click

from taxonomy_store.errors import InvalidValue
from taxonomy_store.cli.app import Context, cli, pass_ctx
from taxonomy_store.cli.options import json_option
from taxonomy_store.cli.render import emit_json, untrusted


@cli.command()
@json_option
@pass_ctx
def init(ctx: Context, as_json: bool) -> None:
    """Create a store (directory, database at the newest schema) or upgrade an existing one."""
    from taxonomy_store.store import init_store

    store = init_store(ctx.store_arg, db_url=ctx.db_url, chroma_url=ctx.chroma_url)
    info = {"store": str(store.dir), "database": store.db_url}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"store ready: {untrusted(store.dir)} (database {untrusted(store.db_url)})")


@cli.group()
def db() -> None:
    """The store's database schema (Alembic migrations shipped with tstore)."""


def _open_any_schema(ctx: Context):
    """The store without requiring the newest schema (a newer tstore's schema is still refused)."""
    from taxonomy_store.store import Store

    return Store.open(ctx.store_arg, db_url=ctx.db_url, check_schema=False)


def _engine(ctx: Context):
    return _open_any_schema(ctx).engine


@db.command()
@pass_ctx
def upgrade(ctx: Context) -> None:
    """Upgrade the database to the newest schema."""
    from taxonomy_store.store import Store

    store = Store.open(ctx.store_arg, db_url=ctx.db_url, check_schema=False)
    click.echo(f"database at schema {store.upgrade_schema()}")


@db.command()
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Confirm: a downgrade drops what newer schemas added ('base': every table, audit log included).")
@pass_ctx
def downgrade(ctx: Context, revision: str, yes: bool) -> None:
    """Downgrade the database to REVISION ('base' drops every table); needs --yes."""
    from taxonomy_store.db import migrate

    store = _open_any_schema(ctx)
    engine = store.engine
    current = migrate.current_revision(engine)
    target = migrate.resolve_revision(revision)
    if target != current and not yes:
        loses = "every table, the audit log included" if target is None else "what the newer schema revisions added"
        raise InvalidValue(
            f"downgrading from schema {current or 'none'} to {target or 'base'} drops {loses}",
            f"export what you need first (`tstore export -o prompts.csv`), then run `tstore db downgrade {revision} --yes --store {store.dir}`",
        )
    dropped = store.downgrade_schema(revision)
    if dropped:
        click.echo(f"dropped the vector collections of {', '.join(untrusted(n) for n in dropped)} (their encoders are gone)")
    click.echo(f"database at schema {migrate.current_revision(engine) or 'base'}")


@db.command()
@click.argument("revision")
@pass_ctx
def stamp(ctx: Context, revision: str) -> None:
    """Record REVISION as the database's schema without migrating (after alembic_version was lost).

    `tstore db current` (or any command) names the revision the tables look like."""
    from taxonomy_store.db import migrate

    engine = _engine(ctx)
    migrate.stamp(engine, revision)
    click.echo(f"database recorded at schema {migrate.current_revision(engine) or 'base'}")


@db.command()
@json_option
@pass_ctx
def current(ctx: Context, as_json: bool) -> None:
    """Show the database's schema revision and the newest one."""
    from taxonomy_store.db import migrate

    engine = _engine(ctx)
    info = {"current": migrate.current_revision(engine), "head": migrate.head_revision()}
    if info["current"] is None:
        info["tables_look_like"] = migrate.guess_revision(engine)
    if as_json:
        emit_json(info)
    else:
        lost = info.get("tables_look_like")
        click.echo(f"current {info['current'] or 'none'}, head {info['head']}"
                   + (f" (no revision recorded, but the tables look like {lost}: `tstore db stamp {lost}`)" if lost else ""))
