"""One import of a store at a time.

Two imports that overlap would both plan against the store as it was before either wrote: the
same file twice then fails on a UNIQUE constraint (datasets.name), and a changed file would be
applied twice. With this lock the second import waits, then plans against what the first wrote
(the same file again: a no-op).
"""

from __future__ import annotations

import time
from typing import Callable

from sqlalchemy import text as sql
from sqlalchemy.exc import OperationalError

from taxonomy_store.errors import StoreBusy

IMPORT_LOCK_KEY = 0x7473746F7265  # "tstore": the PostgreSQL advisory lock key
IMPORT_WAIT_SECONDS = 600.0


def hold_import_lock(session, on_wait: Callable[[], None] | None = None) -> None:
    """Take the store-wide import lock for this transaction; commit or rollback releases it.

    `on_wait` is called once when another writer holds the lock (so the user hears why nothing
    moves). PostgreSQL: a transaction-level advisory lock. SQLite: the database write lock, taken
    before the import reads anything (BEGIN IMMEDIATE). Either waits up to IMPORT_WAIT_SECONDS,
    then raises StoreBusy.
    """
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        _hold_postgresql(conn, on_wait)
    else:
        _hold_sqlite(conn, on_wait)


def _hold_postgresql(conn, on_wait) -> None:
    if conn.execute(sql("SELECT pg_try_advisory_xact_lock(:key)"), {"key": IMPORT_LOCK_KEY}).scalar():
        return
    if on_wait:
        on_wait()
    conn.execute(sql(f"SET LOCAL lock_timeout = '{int(IMPORT_WAIT_SECONDS * 1000)}ms'"))
    try:
        conn.execute(sql("SELECT pg_advisory_xact_lock(:key)"), {"key": IMPORT_LOCK_KEY})
    except OperationalError as exc:
        if "lock timeout" not in str(exc.orig):
            raise
        raise _busy() from exc
    conn.execute(sql("SET LOCAL lock_timeout = DEFAULT"))


def _hold_sqlite(conn, on_wait) -> None:
    busy_ms = int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0)
    deadline = time.monotonic() + IMPORT_WAIT_SECONDS
    conn.exec_driver_sql("PRAGMA busy_timeout = 0")  # the first try only asks
    waiting = False
    try:
        while True:
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except OperationalError as exc:
                if "locked" not in str(exc.orig):
                    raise
                if time.monotonic() > deadline:
                    raise _busy() from exc
            if not waiting:
                waiting = True
                if on_wait:
                    on_wait()
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {max(busy_ms, 100)}")
    finally:
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {busy_ms}")


def _busy() -> StoreBusy:
    return StoreBusy(
        f"another process has held the store's write lock for over {IMPORT_WAIT_SECONDS:g}s (an import still running?)",
        "wait for it to finish, then run the import again",
    )
