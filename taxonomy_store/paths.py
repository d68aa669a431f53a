"""Where things live: the store directory, the data that ships inside the package, and checks of
the paths a user gives (a file to read, a directory to read, a file to write)."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import IO, Any

from taxonomy_store.errors import InputFileError, OutputFileError

STORE_MARKER = "tstore-store.json"
SQLITE_NAME = "tstore.db"
CHROMA_DIR = "chroma"


def default_store_dir() -> Path:
    """`$XDG_DATA_HOME/tstore` (usually ~/.local/share/tstore)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "tstore"


def resolve_store_dir(explicit: str | os.PathLike | None) -> Path:
    """--store DIR, then TSTORE_HOME, then the per-user default."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("TSTORE_HOME")
    if env:
        return Path(env).expanduser()
    return default_store_dir()


def package_dir(subpackage: str) -> Path:
    """Folder of a data subpackage (migrations, seeds, tui), in a checkout or an installed wheel."""
    return Path(str(resources.files(f"taxonomy_store.{subpackage}")))


# -- paths the user gives: each way of not being usable gets its own message and hint
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
    """InputFileError unless `path` is an existing file this user can read.

    A FIFO or device is checked without opening it: opening a FIFO to look at it (and closing
    it) would take the writer's data stream, or hang; only the one open that reads it may."""
    st = _stat(path, "file")
    if stat.S_ISDIR(st.st_mode):
        raise InputFileError(path, "is a directory, not a file", hint="give a file (for example one inside that directory)")
    if stat.S_ISSOCK(st.st_mode):
        raise InputFileError(path, "cannot read: it is a socket, not a file", hint="give a regular file, a FIFO, or - for stdin")
    if not stat.S_ISREG(st.st_mode):
        if not os.access(path, os.R_OK):
            raise _unreadable(path, "file", PermissionError(errno.EACCES, "permission denied"))
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise _unreadable(path, "file", exc) from None


def read_input_bytes(path: Path) -> bytes:
    """The bytes of a file the user gave, opened once: the check and the read use the same open
    file, so a FIFO's writer is read exactly once (and nothing can swap the file in between)."""
    st = _stat(path, "file")
    if stat.S_ISDIR(st.st_mode):
        raise InputFileError(path, "is a directory, not a file", hint="give a file (for example one inside that directory)")
    try:
        with open(path, "rb") as f:
            if stat.S_ISDIR(os.fstat(f.fileno()).st_mode):
                raise InputFileError(path, "is a directory, not a file", hint="give a file (for example one inside that directory)")
            return f.read()
    except IsADirectoryError:
        raise InputFileError(path, "is a directory, not a file", hint="give a file (for example one inside that directory)") from None
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", *, encoding: str | None = "utf-8",
                 newline: str | None = None) -> Iterator[IO]:
    """Write `path` all or nothing: into a temporary file beside it, synced, then renamed over it.

    A failure (full disk, file size limit, an exception, Ctrl-C) leaves the old file as it was and
    no temporary behind. A symbolic link is written through (its target is replaced, the link
    stays). A target that is not a regular file (a FIFO, a device) is written in place: it cannot
    be replaced by renaming, and must never be unlinked. The new file gets the old one's mode, or
    the usual one for a new file (0666 less the umask).
    """
    binary = "b" in mode
    kwargs: dict[str, Any] = {} if binary else {"encoding": encoding, "newline": newline}
    target = Path(os.path.realpath(path))
    try:
        st = target.stat()
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        with open(target, mode, **kwargs) as f:
            yield f
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):  # a full disk, a file size limit, a vanished folder
            raise OutputFileError(Path(path), f"cannot write: {exc.strerror or exc}",
                                  "nothing was changed (an earlier file there is as it was); free space or choose another path") from exc
        raise


def model_cache_dir() -> Path:
    """Models assembled from installed packages, shared by every store of the user:
    `$TSTORE_MODEL_CACHE`, else `$XDG_CACHE_HOME/tstore/models` (usually ~/.cache/tstore/models)."""
    env = os.environ.get("TSTORE_MODEL_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tstore" / "models"
