"""The root command group, its shared options, and how errors reach the user."""

from __future__ import annotations

import json
import sys
from functools import cached_property
from typing import Any

import click

from .. import __version__
from ..errors import TStoreError
from ..text import inert


class Context:
    """What every command gets: where the store is, and a lazily opened facade."""

    def __init__(self, store: str | None, db_url: str | None, chroma_url: str | None, chroma_token: str | None):
        self.store_arg = store
        self.db_url = db_url
        self.chroma_url = chroma_url
        self.chroma_token = chroma_token

    @cached_property
    def store(self):
        from ..store import Store

        return Store.open(self.store_arg, db_url=self.db_url, chroma_url=self.chroma_url, chroma_token=self.chroma_token)


pass_ctx = click.make_pass_decorator(Context)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Machine output: one JSON object (JSON lines when streaming).")(f)


def emit_json(obj: Any) -> None:
    # JSON escapes C0 controls (ESC among them) by itself; on a terminal escape everything
    # non-ASCII too, so C1 controls and bidi overrides in prompt text stay inert.
    click.echo(json.dumps(obj, ensure_ascii=sys.stdout.isatty(), default=str))


def stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def stdout_console():
    """Rich console for data on stdout; when piped, wide enough that lines are not wrapped."""
    import sys

    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--store", "store", metavar="DIR", envvar="TSTORE_HOME", help="Store directory [env TSTORE_HOME; default ~/.local/share/tstore].")
@click.option("--db-url", envvar="TSTORE_DB_URL", metavar="URL", help="Use this database (e.g. postgresql://user@host/db) instead of the store's SQLite [env TSTORE_DB_URL].")
@click.option("--chroma-url", envvar="TSTORE_CHROMA_URL", metavar="URL", help="Use a Chroma server (http://host:port) instead of the embedded one [env TSTORE_CHROMA_URL].")
@click.option("--chroma-token", envvar="TSTORE_CHROMA_TOKEN", metavar="TOKEN", help="Auth token for the Chroma server [env TSTORE_CHROMA_TOKEN].")
@click.version_option(__version__, prog_name="tstore")
@click.pass_context
def cli(ctx: click.Context, store, db_url, chroma_url, chroma_token) -> None:
    """tstore: labeled safety prompts in SQL, their embeddings in Chroma, and the Safe-Embed metrics."""
    ctx.obj = Context(store, db_url, chroma_url, chroma_token)


def run(group: click.Group, argv: list[str] | None) -> int:
    """Run the CLI; domain errors become one line on stderr and a non-zero exit."""
    try:
        group.main(args=argv, prog_name="tstore", standalone_mode=False)
    except TStoreError as exc:
        # Messages quote file names and cell values: printed inert, like any untrusted text.
        click.echo(f"error: {inert(exc.message)}", err=True)
        if exc.hint:
            click.echo(f"hint: {inert(exc.hint)}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a database or I/O failure we did not foresee: still one line
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(exc, (SQLAlchemyError, OSError)):
            first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            click.echo(f"error: {type(exc).__name__}: {first}", err=True)
            return 1
        raise
    return 0
