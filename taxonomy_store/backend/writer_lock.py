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

A Chroma server (`--chroma-url`) serialises writes itself; there the lock is a no-op.
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from taxonomy_store.errors import WriterBusy

LOCK_NAME = "writer.lock"
OWNER_NAME = "writer.json"
# How often a waiting writer looks again (seconds).
POLL_S = 0.25

# on_wait(message): told once when a writer has to wait for another one.
OnWait = Callable[[str], None]


class WriterLock:
    """The store-level writer lock of the embedded vector index (see the module docstring)."""

    def __init__(self, store_dir: Path, *, enabled: bool = True, on_wait: OnWait | None = None):
        self.dir = Path(store_dir)
        self.enabled = enabled
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
        if not self.enabled or depth:
            self._local.depth = depth + 1
            try:
                yield False
            finally:
                self._local.depth = depth
            return
        from filelock import FileLock, Timeout

        self.dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path))
        try:
            lock.acquire(blocking=False)
        except Timeout:
            message = f"waiting for {self.describe_holder()} to finish with the vector index"
            if not wait:
                raise WriterBusy(
                    f"{self.describe_holder()} is writing to this store's vector index",
                    "wait for it to finish and run the command again, or leave out --no-wait to wait for it",
                ) from None
            notify = on_wait or self.on_wait
            if notify:
                notify(message)
            lock.acquire(poll_interval=POLL_S)
        self._local.depth = 1
        try:
            self._write_owner({"pid": os.getpid(), "what": what, "since": _now()})
            yield True
        finally:
            self._local.depth = 0
            try:
                self._write_owner({"pid": None, "released_by": os.getpid(), "at": _now(), "ns": time.time_ns()})
            finally:
                lock.release()

    def _write_owner(self, data: dict) -> None:
        tmp = self.owner_path.with_suffix(f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
            tmp.replace(self.owner_path)
        except OSError:
            pass  # the holder's name is a courtesy; the lock itself is what protects the index


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
