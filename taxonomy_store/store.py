"""The facade: the one place that writes SQL (and, through its parts, Chroma).

The CLI and the TUI call `Store` methods and its parts (`store.taxonomies`, ...); they never
open a session or a Chroma client themselves.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Iterator

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from . import paths
from .audit import AuditBatch, data_revision
from .db import migrate
from .db.engine import make_engine, normalise_url, redact
from .errors import NotAStore, StoreExists


def _read_marker(store_dir: Path) -> dict:
    marker = store_dir / paths.STORE_MARKER
    if not marker.is_file():
        if not store_dir.exists():
            raise NotAStore(f"{store_dir} does not exist", f"create it with `tstore init --store {store_dir}`")
        raise NotAStore(
            f"{store_dir} is not a tstore store (no {paths.STORE_MARKER})",
            f"create one with `tstore init --store {store_dir}` or point --store / TSTORE_HOME at a store",
        )
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NotAStore(f"{marker} is damaged: {exc}") from exc


def _db_url_for(store_dir: Path, marker: dict | None, db_url: str | None) -> str:
    url = db_url or os.environ.get("TSTORE_DB_URL") or (marker or {}).get("db_url")
    if url:
        return normalise_url(url)
    return f"sqlite:///{(store_dir / paths.SQLITE_NAME).resolve()}"


class Store:
    """An open store: a directory (marker, SQLite file, Chroma data) and its database."""

    def __init__(self, store_dir: Path, engine: Engine, *, chroma_url: str | None = None, chroma_token: str | None = None):
        self.dir = store_dir
        self.engine = engine
        self.chroma_url = chroma_url
        self.chroma_token = chroma_token
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # -- opening -----------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        store: str | os.PathLike | None = None,
        *,
        db_url: str | None = None,
        chroma_url: str | None = None,
        chroma_token: str | None = None,
        check_schema: bool = True,
    ) -> "Store":
        store_dir = paths.resolve_store_dir(store)
        marker = _read_marker(store_dir)
        engine = make_engine(_db_url_for(store_dir, marker, db_url))
        migrate.check_schema(engine, require_head=check_schema)
        return cls(
            store_dir,
            engine,
            chroma_url=chroma_url or os.environ.get("TSTORE_CHROMA_URL") or marker.get("chroma_url"),
            chroma_token=chroma_token or os.environ.get("TSTORE_CHROMA_TOKEN"),
        )

    @property
    def db_url(self) -> str:
        return redact(self.engine.url.render_as_string(hide_password=False))

    @property
    def chroma_path(self) -> Path:
        return self.dir / paths.CHROMA_DIR

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transactions ------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read-only unit of work (rolled back at the end)."""
        with self._sessions() as session:
            try:
                yield session
            finally:
                session.rollback()

    @contextmanager
    def write(self, reason: str | None = None) -> Iterator[tuple[Session, AuditBatch]]:
        """One transaction with its audit batch: all of it commits, or none of it."""
        with self._sessions() as session:
            audit = AuditBatch(session, reason=reason)
            try:
                yield session, audit
                audit.flush()
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def connect(self):
        """A raw connection, for readers that keep one open per thread."""
        return self.engine.connect()

    def data_revision(self) -> int:
        with self.session() as s:
            return data_revision(s)

    # -- parts -------------------------------------------------------------------------
    @cached_property
    def taxonomies(self):
        from .taxonomy import Taxonomies

        return Taxonomies(self)

    # Each part lives in a module of its own; the CLI and the TUI reach them only through here.
    @cached_property
    def imports(self):
        """Importing data files into the store: `taxonomy_store/imports.py`."""
        from .imports import Imports

        return Imports(self)

    @cached_property
    def exports(self):
        """Writing prompts and pairs back out: `taxonomy_store/exports.py`."""
        from .exports import Exports

        return Exports(self)

    @cached_property
    def curation(self):
        """Edits of prompts and pairs, pair review, undo: `taxonomy_store/curation.py`."""
        from .curation import Curation

        return Curation(self)

    @cached_property
    def encoders(self):
        """The encoder registry: `taxonomy_store/encoders.py`."""
        from .encoders import Encoders

        return Encoders(self)

    @cached_property
    def writer_lock(self):
        """One writer at a time on the embedded vector index: `taxonomy_store/writer_lock.py`."""
        from .writer_lock import WriterLock

        return WriterLock(self.dir, enabled=not self.chroma_url)

    @cached_property
    def index(self):
        """Per-encoder Chroma collections: embed, verify, read vectors: `taxonomy_store/indexing.py`."""
        from .indexing import Index

        return Index(self, self.writer_lock)

    @cached_property
    def metrics(self):
        """Metric runs from stored vectors: `taxonomy_store/metric_runs.py`."""
        from .metric_runs import MetricRuns

        return MetricRuns(self, self.neighbours)

    @cached_property
    def search(self):
        """Nearest categories for new prompts, calibration: `taxonomy_store/querying.py`."""
        from .querying import Querying

        return Querying(self.neighbours, self.encoders, self.index)

    @cached_property
    def neighbours(self):
        """The one exact neighbour service (stored vectors, exact top-k, filters as masks): `taxonomy_store/neighbours.py`."""
        from .knn_graphs import GraphCache
        from .neighbours import Neighbours

        return Neighbours(self, self.encoders, self.index, GraphCache(self.dir / "cache"))

    @cached_property
    def adaptation(self):
        """Tuning encoders on the store's data, exporting encoders: `taxonomy_store/adapting.py`."""
        from .adapting import Adaptation

        return Adaptation(store_dir=self.dir, read=self.session, encoders=self.encoders, index=self.index)

    @cached_property
    def review(self):
        """Read-only views for the curators' TUI: suspects, neighbours, metric tables: `taxonomy_store/review.py`."""
        from .review import Review

        return Review(self, self.neighbours)


def init_store(
    store: str | os.PathLike | None = None, *, db_url: str | None = None, chroma_url: str | None = None
) -> Store:
    """Create a store directory (or adopt an existing one) and upgrade its database to head."""
    store_dir = paths.resolve_store_dir(store)
    if store_dir.exists() and not store_dir.is_dir():
        raise StoreExists(f"{store_dir} exists and is not a directory")
    marker_path = store_dir / paths.STORE_MARKER
    marker = _read_marker(store_dir) if marker_path.exists() else None
    if marker is None and store_dir.is_dir() and any(store_dir.iterdir()):
        raise NotAStore(
            f"{store_dir} is not empty and is not a tstore store",
            "choose an empty or new directory for --store",
        )
    url = _db_url_for(store_dir, marker, db_url)
    if not url.startswith("sqlite"):
        make_engine(url).dispose()  # fail before creating anything if the server is unreachable
    store_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    migrate.upgrade(engine)
    if marker is None:
        marker = {"format": 1, "created_at": datetime.now(timezone.utc).isoformat()}
        if db_url or os.environ.get("TSTORE_DB_URL"):
            marker["db_url"] = url
        if chroma_url:
            marker["chroma_url"] = chroma_url
        marker_path.write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return Store(store_dir, engine, chroma_url=chroma_url or marker.get("chroma_url"))


def open_store(store: str | os.PathLike | None = None, **kwargs) -> Store:
    return Store.open(store, **kwargs)
