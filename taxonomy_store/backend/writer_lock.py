"""One writer at a time for a store's embedded vector index.

The embedded Chroma keeps each collection's HNSW index in the memory of every process that
opened it and writes it back to disk every 1,000 additions. Two processes adding vectors at once
each write back their own copy, and the second copy loses the first one's vectors while Chroma's
log says they are in: those vectors can no longer be read. So every write to the embedded index
(embed, verify --repair, encoder remove, adapt) holds this lock, and a writer reloads the index
from disk after taking it. Readers never take it.

`<store>/writer.lock` is the lock itself (a `filelock` lock: released by the OS when its
process dies); `<store>/writer.json` names the holder (pid, what, since) so a second writer can
say whom it waits for. Each release rewrites `writer.json`, so its modification time is the
index's *generation*: a long-lived reader (the TUI) that sees it move reloads its client.

A Chroma server (`--chroma-url`) keeps its index consistent itself, so there the file lock is
off. Writers that share a PostgreSQL database (team mode, possibly on different machines) also
take a PostgreSQL advisory lock, on a connection of their own held for the write: a second
`embed` waits for the first, then finds nothing left to encode, instead of encoding the same
prompts again and colliding on the bookkeeping rows. The server releases it when the holder's
connection ends, so a killed writer never leaves it held.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from taxonomy_store.errors import WriterBusy

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

LOCK_NAME = "writer.lock"
OWNER_NAME = "writer.json"
# How often a waiting writer looks again (seconds).
POLL_S = 0.25
# The advisory lock's key: one per database (a store owns its database), a signed 64-bit number.
ADVISORY_KEY = int.from_bytes(hashlib.sha256(b"tstore vector index writer").digest()[:8], "big", signed=True)

# on_wait(message): told once when a writer has to wait for another one.
OnWait = Callable[[str], None]


class WriterLock:
    """The store-level writer lock of the embedded vector index (see the module docstring)."""

    def __init__(self, store_dir: Path, *, enabled: bool = True, on_wait: OnWait | None = None,
                 shared_engine: "Engine | None" = None):
        self.dir = Path(store_dir)
        self.enabled = enabled
        # A PostgreSQL engine: writers of every machine coordinate through an advisory lock on it.
        self.shared_engine = shared_engine
        # Who hears about waiting when a caller gives no on_wait of its own (the CLI: stderr).
        self.on_wait = on_wait
        # Nested holds in one thread (verify --repair runs embed) take the lock once; another
        # thread of the same process waits like another process would.
        self._local = threading.local()

    @property
    def path(self) -> Path:
        return self.dir / LOCK_NAME

    @property
    def owner_path(self) -> Path:
        return self.dir / OWNER_NAME

    def generation(self) -> int:
        """Changes whenever a writer releases the lock (0 before the first write)."""
        try:
            st = self.owner_path.stat()
        except OSError:
            return 0
        return st.st_mtime_ns ^ (st.st_size << 1)

    def holder(self) -> dict | None:
        """The last recorded holder ({pid, what, since}), or None."""
        try:
            data = json.loads(self.owner_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("pid") else None

    def describe_holder(self) -> str:
        h = self.holder()
        if not h:
            return "another writer"
        since = str(h.get("since", ""))[11:19]
        return f"another writer (pid {h['pid']}: {h.get('what') or 'a write'}" + (f", since {since} UTC)" if since else ")")

    @contextmanager
    def hold(self, what: str, *, wait: bool = True, on_wait: OnWait | None = None) -> Iterator[bool]:
        """Hold the lock for `what`; yields True when this call took it (False: already held here, or disabled).

        wait=False raises WriterBusy at once when another process holds it; otherwise waits,
        telling on_wait (or the lock's default) once.
        """
        depth = getattr(self._local, "depth", 0)
        if depth or not (self.enabled or self.shared_engine is not None):
            self._local.depth = depth + 1
            try:
                yield False
            finally:
                self._local.depth = depth
            return
        notify = on_wait or self.on_wait
        with ExitStack() as stack:
            # Always in this order (database, then file), so two writers never hold one each.
            if self.shared_engine is not None:
                stack.enter_context(self._advisory(wait, notify))
            if self.enabled:
                stack.enter_context(self._file_lock(what, wait, notify))
            self._local.depth = 1
            try:
                yield True
            finally:
                self._local.depth = 0

    @contextmanager
    def _file_lock(self, what: str, wait: bool, notify: OnWait | None) -> Iterator[None]:
        from filelock import FileLock, Timeout

        self.dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path))
        try:
            lock.acquire(blocking=False)
        except Timeout:
            if not wait:
                raise WriterBusy(
                    f"{self.describe_holder()} is writing to this store's vector index",
                    "wait for it to finish and run the command again, or leave out --no-wait to wait for it",
                ) from None
            if notify:
                notify(f"waiting for {self.describe_holder()} to finish with the vector index")
            lock.acquire(poll_interval=POLL_S)
        try:
            self._write_owner({"pid": os.getpid(), "what": what, "since": _now()})
            yield
        finally:
            try:
                self._write_owner({"pid": None, "released_by": os.getpid(), "at": _now(), "ns": time.time_ns()})
            finally:
                lock.release()

    @contextmanager
    def _advisory(self, wait: bool, notify: OnWait | None) -> Iterator[None]:
        """PostgreSQL's session advisory lock, on a connection of its own (autocommit: no open transaction)."""
        assert self.shared_engine is not None
        with self.shared_engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            took = conn.exec_driver_sql("SELECT pg_try_advisory_lock(%s)", (ADVISORY_KEY,)).scalar()
            if not took:
                holder = _advisory_holder(conn)
                if not wait:
                    raise WriterBusy(f"{holder} is writing to this store's vector index",
                                     "wait for it to finish and run the command again, or leave out --no-wait to wait for it")
                if notify:
                    notify(f"waiting for {holder} to finish with the vector index")
                conn.exec_driver_sql("SELECT pg_advisory_lock(%s)", (ADVISORY_KEY,))
            try:
                yield
            finally:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(%s)", (ADVISORY_KEY,))

    def _write_owner(self, data: dict) -> None:
        tmp = self.owner_path.with_suffix(f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
            tmp.replace(self.owner_path)
        except OSError:
            pass  # the holder's name is a courtesy; the lock itself is what protects the index


def _advisory_holder(conn) -> str:
    """Who holds the advisory lock, as PostgreSQL sees it (its backend pid and client address)."""
    try:
        row = conn.exec_driver_sql(
            "SELECT a.pid, a.client_addr FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = %s AND l.objid::bigint = %s LIMIT 1",
            ((ADVISORY_KEY >> 32) & 0xFFFFFFFF, ADVISORY_KEY & 0xFFFFFFFF),
        ).first()
    except Exception:
        row = None
    if not row:
        return "another writer"
    return f"another writer (PostgreSQL backend {row[0]}" + (f" from {row[1]})" if row[1] else ")")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
