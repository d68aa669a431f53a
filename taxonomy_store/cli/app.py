"""The root command group, the options every command accepts, and how errors reach the user."""

from __future__ import annotations

from functools import cached_property

import click

from taxonomy_store import __version__
from taxonomy_store.errors import TStoreError
from taxonomy_store.cli.render import untrusted


class Context:
    """What every command gets: where the store is, and a lazily opened facade."""

    def __init__(self, store: str | None, db_url: str | None, chroma_url: str | None, chroma_token: str | None):
        self.store_arg = store
        self.db_url = db_url
        self.chroma_url = chroma_url
        self.chroma_token = chroma_token

    @cached_property
    def store(self):
        from taxonomy_store.store import Store

        store = Store.open(self.store_arg, db_url=self.db_url, chroma_url=self.chroma_url, chroma_token=self.chroma_token)
        # A command that writes vectors while another process does says whom it waits for.
        store.writer_lock.on_wait = lambda message: click.echo(f"{message} ...", err=True)
        return store


pass_ctx = click.make_pass_decorator(Context)

# Where the store lives, given before the subcommand (`tstore --store DIR import f.csv`) or after
# it (`tstore import f.csv --store DIR`): (flag, Context attribute, metavar, environment, help).
STORE_OPTIONS = (
    ("--store", "store_arg", "DIR", "TSTORE_HOME", "Store directory [env TSTORE_HOME; default ~/.local/share/tstore]."),
    ("--db-url", "db_url", "URL", "TSTORE_DB_URL",
     "Use this database (e.g. postgresql://user@host/db) instead of the store's SQLite [env TSTORE_DB_URL]."),
    ("--chroma-url", "chroma_url", "URL", "TSTORE_CHROMA_URL",
     "Use a Chroma server (http://host:port) instead of the embedded one [env TSTORE_CHROMA_URL]."),
    ("--chroma-token", "chroma_token", "TOKEN", "TSTORE_CHROMA_TOKEN", "Auth token for the Chroma server [env TSTORE_CHROMA_TOKEN]."),
)


def _store_option_after_subcommand(flag: str, attribute: str, metavar: str) -> click.Option:
    """The same store option on a subcommand: a value given there replaces the root group's."""

    def remember(ctx: click.Context, param: click.Parameter, value):
        context = ctx.find_object(Context)
        if value is not None and context is not None:
            setattr(context, attribute, value)

    # Hidden: the root's --help documents them once; not exposed: command functions never see them.
    return click.Option([flag], metavar=metavar, hidden=True, expose_value=False, callback=remember)


class _AcceptsStoreOptions:
    """Mixin for commands and groups: add the store options unless the command defines the flag itself."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        taken = {opt for p in self.params for opt in getattr(p, "opts", ())}
        self.params.extend(
            _store_option_after_subcommand(flag, attribute, metavar)
            for flag, attribute, metavar, _env, _help in STORE_OPTIONS if flag not in taken
        )


class Command(_AcceptsStoreOptions, click.Command):
    pass


class Group(_AcceptsStoreOptions, click.Group):
    command_class = Command
    group_class = type  # subgroups are Groups too


class RootGroup(click.Group):
    command_class = Command
    group_class = Group


def _root_store_options(f):
    for flag, attribute, metavar, env, help_text in reversed(STORE_OPTIONS):
        f = click.option(flag, attribute, metavar=metavar, envvar=env, help=help_text)(f)
    return f


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@_root_store_options
@click.version_option(__version__, prog_name="tstore")
@click.pass_context
def cli(ctx: click.Context, store_arg, db_url, chroma_url, chroma_token) -> None:
    """tstore: labeled safety prompts in SQL, their embeddings in Chroma, and the Safe-Embed metrics.

    --store, --db-url, --chroma-url and --chroma-token may also follow the subcommand
    (`tstore import data.csv --store DIR`).
    """
    ctx.obj = Context(store_arg, db_url, chroma_url, chroma_token)


def _say_error(message: str, hint: str | None) -> None:
    # Messages carry file, dataset and category names from outside: printed inert.
    click.echo(f"error: {untrusted(message)}", err=True)
    if hint:
        click.echo(f"hint: {untrusted(hint)}", err=True)


def run(group: click.Group, argv: list[str] | None) -> int:
    """Run the CLI; domain errors become one line on stderr and a non-zero exit."""
    try:
        group.main(args=argv, prog_name="tstore", standalone_mode=False)
    except TStoreError as exc:
        _say_error(exc.message, exc.hint)
        return exc.exit_code
    except click.exceptions.Abort as exc:
        # click turns an EOFError into Abort as if the user pressed Ctrl-D; tstore asks no
        # questions, so an EOFError is a file that ended early (a truncated cache, say).
        if isinstance(exc.__cause__, EOFError):
            _say_error(f"a file ended before its data did (EOFError: {exc.__cause__})",
                       "if it is a cache file in the store's cache/ folder, delete it and run the command again")
            return 1
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
            click.echo(f"error: {type(exc).__name__}: {untrusted(first)}", err=True)
            return 1
        raise
    return 0
