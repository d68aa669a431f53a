"""Options and argument types that several command groups share.

The same flag means the same thing everywhere (`--json`, `--encoder/-e`, `--all`), and a path
the user gives is checked here, so a directory, a missing file or an unreadable one ends in
`error:` + `hint:` like every other mistake rather than in click's own usage message.
"""

from __future__ import annotations

from pathlib import Path

import click

from taxonomy_store.errors import OutputFileError
from taxonomy_store.paths import check_readable_dir, check_readable_file, check_writable_file


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Machine output: one JSON object (JSON lines when streaming).")(f)


def exact_option(f):
    return click.option(
        "--exact", "exact", is_flag=True,
        help="Exact neighbours whatever the size [default: a faiss index for searches over at least "
             "TSTORE_APPROX_FROM (200000) prompts; figures say exact: false with its recall].",
    )(f)


def encoder_option(help: str = "Encoder to use [env TSTORE_ENCODER; default minilm]."):
    return click.option("--encoder", "-e", "encoder", metavar="NAME", envvar="TSTORE_ENCODER", default=None, help=help)


all_encoders_option = click.option("--all", "all_encoders", is_flag=True, help="Every registered encoder.")

no_wait_option = click.option(
    "--no-wait", "no_wait", is_flag=True,
    help="Fail at once when another process is writing to the vector index, instead of waiting for it.",
)


ray_option = click.option(
    "--ray", "ray_address", metavar="ADDRESS", envvar="TSTORE_RAY_ADDRESS", default=None,
    help="Share the work out over the Ray cluster at ADDRESS (HOST:PORT of its head); this process stays the one "
         "writer. Needs the extra: pip install 'taxonomy-store[ray]' [env TSTORE_RAY_ADDRESS].",
)


class InputFile(click.ParamType):
    """An existing, readable file (or `-` for stdin where allowed); converts to str or Path."""

    name = "file"

    def __init__(self, *, allow_dash: bool = False, path_type: type = str):
        self.allow_dash = allow_dash
        self.path_type = path_type

    def convert(self, value, param, ctx):
        if self.allow_dash and str(value) == "-":
            return value
        check_readable_file(Path(value))
        return self.path_type(value)


class InputDir(click.ParamType):
    """An existing directory this user can list."""

    name = "directory"

    def convert(self, value, param, ctx):
        check_readable_dir(Path(value))
        return str(value)


class OutputFile(click.ParamType):
    """A file to write (`-` for stdout): its directory must exist."""

    name = "file"

    def convert(self, value, param, ctx):
        if str(value) != "-":
            check_writable_file(Path(value))
        return str(value)


class OutputDir(click.ParamType):
    """A directory to write into: created when missing, but not a path that is a file."""

    name = "directory"

    def convert(self, value, param, ctx):
        path = Path(value)
        if path.exists() and not path.is_dir():
            raise OutputFileError(path, "is a file, not a directory", "give a directory (it is created when missing)")
        return str(value)


# taxonomy_store.guard.scorers.SCORERS, named here so `--help` imports no numpy
SCORERS = ("knn-share", "knn-distance", "knn-contrast", "probe")


def scorer_option(f):
    """--scorer: force one of the guard's scorers instead of the best grouped cross-validation AUROC."""
    return click.option(
        "--scorer", type=click.Choice(SCORERS), default=None,
        help="Use this scorer [default: the best grouped cross-validation AUROC].",
    )(f)
