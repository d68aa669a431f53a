"""Options and argument types that several command groups share.

The same flag means the same thing everywhere (`--json`, `--encoder/-e`, `--all`), and a path
the user gives is checked here, so a directory, a missing file or an unreadable one ends in
`error:` + `hint:` like every other mistake rather than in click's own usage message.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import click

from ..errors import InputFileError, OutputFileError


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Machine output: one JSON object (JSON lines when streaming).")(f)


def encoder_option(help: str = "Encoder to use [env TSTORE_ENCODER; default minilm]."):
    return click.option("--encoder", "-e", "encoder", metavar="NAME", envvar="TSTORE_ENCODER", default=None, help=help)


all_encoders_option = click.option("--all", "all_encoders", is_flag=True, help="Every registered encoder.")


# -- paths -----------------------------------------------------------------------------------
def _stat(path: Path, what: str) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise InputFileError(path, "is a symbolic link to something that does not exist",
                                 hint=f"point it at an existing {what}, or give the {what} itself") from None
        raise InputFileError(path, f"no such {what}",
                             hint="check the path (a relative path starts from the current directory)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputFileError(path, "is a loop of symbolic links", hint=f"give the {what} itself, not the link") from None
        raise InputFileError(path, f"cannot read: {exc.strerror or exc}", hint=f"check that the {what} and its folders are readable") from None


def _unreadable(path: Path, what: str, exc: OSError) -> InputFileError:
    if isinstance(exc, PermissionError):
        return InputFileError(path, "permission denied", hint=f"make the {what} readable for this user (e.g. chmod u+r)")
    return InputFileError(path, f"cannot read: {exc.strerror or exc}", hint=f"check that the {what} is readable")


def check_readable_file(path: Path) -> None:
    """InputFileError unless `path` is an existing file this user can read."""
    st = _stat(path, "file")
    if stat.S_ISDIR(st.st_mode):
        raise InputFileError(path, "is a directory, not a file", hint="give a file (for example one inside that directory)")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise _unreadable(path, "file", exc) from None


def check_readable_dir(path: Path) -> None:
    """InputFileError unless `path` is an existing directory this user can list."""
    st = _stat(path, "directory")
    if not stat.S_ISDIR(st.st_mode):
        raise InputFileError(path, "is a file, not a directory", hint="give the directory that holds the files")
    try:
        os.listdir(path)
    except OSError as exc:
        raise _unreadable(path, "directory", exc) from None


def check_writable_file(path: Path) -> None:
    """OutputFileError unless a file can be written at `path` (its directory exists; it is not a directory)."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputFileError(path, "is a directory", "give a file name, e.g. DIR/prompts.csv")
    if not parent.is_dir():
        reason = "is not a directory" if parent.exists() else "does not exist"
        raise OutputFileError(path, f"its directory {parent} {reason}", f"create it first (mkdir -p {parent}) or choose another path")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputFileError(path, "permission denied", "choose a path this user can write")


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
