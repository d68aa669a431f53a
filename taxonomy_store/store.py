"""The composition root: opens a store's backend and wires its parts together.

The CLI and the TUI call `Store` methods and its parts (`store.taxonomies`, ...); they never
open a session or a Chroma client themselves. No domain logic lives here, and no part imports
this module: each part receives its collaborators in its constructor.
"""

from __future__ import annotations

import json
import os
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from taxonomy_store import paths
from taxonomy_store.audit import AuditBatch
from taxonomy_store.backend.database import Database
from taxonomy_store.backend.dirs import StoreDirs
from taxonomy_store.db import migrate
from taxonomy_store.db.engine import make_engine, normalise_url
from taxonomy_store.errors import NotAStore, StoreExists


def _read_marker(store_dir: Path) -> dict:
    marker = store_dir / paths.STORE_MARKER
    if not marker.is_file():
        if not store_dir.exists():
            raise NotAStore(f"{store_dir} does not exist", f"create it with `tstore init --store {store_dir}`")
        # `tstore init` only adopts an empty directory: suggest it only where it would work.
        empty = store_dir.is_dir() and not any(store_dir.iterdir())
        raise NotAStore(
            f"{store_dir} is not a tstore store (no {paths.STORE_MARKER})",
            f"create one with `tstore init --store {store_dir}` or point --store / TSTORE_HOME at a store" if empty else
            "point --store / TSTORE_HOME at a store, or create one in a new directory: `tstore init --store NEW_DIR`",
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
    """An open store: a directory (marker, SQLite file, Chroma data) and its database.

    The composition root: it opens the backend and builds each part with the collaborators that
    part uses. Parts are built on first use, so commands that need few of them start fast.
    """

    def __init__(self, store_dir: Path, engine: Engine, *, chroma_url: str | None = None, chroma_token: str | None = None):
        self.dir = store_dir
        self.engine = engine
        self.chroma_url = chroma_url
        self.chroma_token = chroma_token
        self.db = Database(engine)
        self.dirs = StoreDirs(store_dir)

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
        opened = cls(
            store_dir,
            engine,
            chroma_url=chroma_url or os.environ.get("TSTORE_CHROMA_URL") or marker.get("chroma_url"),
            chroma_token=chroma_token or os.environ.get("TSTORE_CHROMA_TOKEN"),
        )
        if check_schema:
            opened.ensure_default_encoder()
        return opened

    def ensure_default_encoder(self) -> None:
        """Register the default encoder on a store that has never had one (made before `init_store` did it).

        Idempotent and one cheap read once done: a store whose audit log has seen any encoder
        is left alone, so removing `minilm` sticks."""
        self.encoders.ensure_default()

    def upgrade_schema(self) -> str:
        """Upgrade the database to the newest schema (then register the default encoder if the store never had one)."""
        migrate.upgrade(self.engine)
        self.ensure_default_encoder()
        return migrate.current_revision(self.engine)

    @property
    def db_url(self) -> str:
        return self.db.url

    @property
    def chroma_path(self) -> Path:
        return self.dirs.chroma

    def close(self) -> None:
        self.db.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transactions (the backend's, for the orchestration above the parts) -------------
    def session(self) -> AbstractContextManager[Session]:
        """A read-only unit of work (rolled back at the end)."""
        return self.db.session()

    def write(self, reason: str | None = None) -> AbstractContextManager[tuple[Session, AuditBatch]]:
        """One transaction with its audit batch: all of it commits, or none of it."""
        return self.db.write(reason)

    def data_revision(self) -> int:
        return self.db.data_revision()

    # -- backend -------------------------------------------------------------------------
    @cached_property
    def writer_lock(self):
        """One writer at a time on the embedded vector index: `backend/writer_lock.py`."""
        from taxonomy_store.backend.writer_lock import WriterLock

        return WriterLock(self.dir, enabled=not self.chroma_url)

    @cached_property
    def vector_index(self):
        from taxonomy_store.backend.vector_index import VectorIndex

        return VectorIndex(self.dirs.chroma, self.writer_lock, chroma_url=self.chroma_url, chroma_token=self.chroma_token)

    @cached_property
    def live_encoders(self):
        from taxonomy_store.backend.encoding import LiveEncoders
        from taxonomy_store.backend.model_refs import open_encoder

        return LiveEncoders(open_encoder)

    # -- parts ---------------------------------------------------------------------------
    @cached_property
    def taxonomies(self):
        """Load taxonomy definitions, list them, read their trees: `taxonomy/trees.py`."""
        from taxonomy_store.taxonomy.trees import Taxonomies

        return Taxonomies(self.db)

    @cached_property
    def imports(self):
        """Importing data files into the store: `transfer/imports.py`."""
        from taxonomy_store.transfer.imports import Imports

        return Imports(self.db, self.taxonomies)

    @cached_property
    def exports(self):
        """Writing prompts and pairs back out: `transfer/exports.py`."""
        from taxonomy_store.transfer.exports import Exports

        return Exports(self.db)

    @cached_property
    def curation(self):
        """Edits of prompts and pairs, pair review, undo: `curation/edits.py`."""
        from taxonomy_store.curation.edits import Curation

        return Curation(self.db)

    @cached_property
    def encoders(self):
        """The encoder registry: `embeddings/encoders.py`. Removing an encoder drops its vectors from the index."""
        from taxonomy_store.embeddings.encoders import Encoders

        return Encoders(self.db, drop_vectors=lambda info, **wait: self.embeddings.drop_vectors(info, **wait))

    @cached_property
    def embeddings(self):
        """Per-encoder vector collections: embed, verify, read vectors: `embeddings/indexing.py`."""
        from taxonomy_store.embeddings.indexing import Embeddings

        return Embeddings(self.db, self.encoders, self.vector_index, self.live_encoders)

    @cached_property
    def metric_runs(self):
        """Metric runs from stored vectors: `measurement/runs.py`."""
        from taxonomy_store.measurement.runs import MetricRuns

        runs = MetricRuns(self.db, self.encoders, self.embeddings, self.neighbours)
        # held-out evaluations are metric runs another part computes: it reruns them when stale
        runs.rerunners["evaluate"] = lambda run, progress=None: self.evaluation.rerun(run, progress)
        return runs

    @cached_property
    def guard(self):
        """The guard: query (category vote, calibrated verdict) and calibrate: `guard/querying.py`."""
        from taxonomy_store.guard.querying import Guard

        return Guard(self.neighbours, self.encoders, self.embeddings)

    @cached_property
    def evaluation(self):
        """Held-out evaluation of the guard, stored as metric runs: `taxonomy_store/guard/evaluation.py`."""
        from taxonomy_store.guard.evaluation import Evaluation

        return Evaluation(self.neighbours, self.encoders, self.metric_runs)

    @cached_property
    def neighbours(self):
        """The one exact neighbour service (stored vectors, exact top-k, filters as masks): `neighbours/service.py`."""
        from taxonomy_store.neighbours.graphs import GraphCache
        from taxonomy_store.neighbours.service import Neighbours

        return Neighbours(self.db, self.encoders, self.embeddings, GraphCache(self.dirs.cache))

    @cached_property
    def adaptation(self):
        """Tuning encoders on the store's data, exporting encoders: `taxonomy_store/adapt/adaptation.py`."""
        from taxonomy_store.adapt.adaptation import Adaptation

        return Adaptation(store_dir=self.dir, read=self.session, encoders=self.encoders, embeddings=self.embeddings,
                          metric_runs=self.metric_runs)

    @cached_property
    def review(self):
        """Read-only views for the curators' TUI: suspects, neighbours, metric tables: `curation/review.py`."""
        from taxonomy_store.curation.review import Review

        return Review(self.db, self.taxonomies, self.encoders, self.embeddings, self.metric_runs, self.neighbours)


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
    store = Store(store_dir, engine, chroma_url=chroma_url or marker.get("chroma_url"))
    store.ensure_default_encoder()
    return store


def open_store(store: str | os.PathLike | None = None, **kwargs) -> Store:
    return Store.open(store, **kwargs)
