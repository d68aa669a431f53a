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
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from taxonomy_store import paths
from taxonomy_store.backend.database import Database
from taxonomy_store.backend.dirs import StoreDirs
from taxonomy_store.backend.encoding import refuse_weights
from taxonomy_store.db import migrate
from taxonomy_store.db.engine import make_engine, normalise_url
from taxonomy_store.errors import NotAStore, StoreExists

if TYPE_CHECKING:
    from taxonomy_store.adapt.adaptation import Adaptation
    from taxonomy_store.distributed.cluster import RayCluster
    from taxonomy_store.backend.encoding import LiveEncoders
    from taxonomy_store.backend.vector_index import VectorIndex
    from taxonomy_store.backend.writer_lock import WriterLock
    from taxonomy_store.curation.edits import Curation
    from taxonomy_store.curation.pair_mining import PairMining
    from taxonomy_store.curation.review import Review
    from taxonomy_store.embeddings.encoders import Encoders
    from taxonomy_store.embeddings.indexing import Embeddings
    from taxonomy_store.guard.evaluation import Evaluation
    from taxonomy_store.guard.querying import Guard
    from taxonomy_store.measurement.engine import Progress, RunResult
    from taxonomy_store.measurement.runs import MetricRuns
    from taxonomy_store.neighbours.service import Neighbours
    from taxonomy_store.taxonomy.trees import Taxonomies
    from taxonomy_store.transfer.exports import Exports
    from taxonomy_store.transfer.imports import Imports


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


def _from_environment() -> dict[str, str | None]:
    """Every setting the store reads from the environment, read once where it is opened."""
    return {
        "db_url": os.environ.get("TSTORE_DB_URL"),
        "chroma_url": os.environ.get("TSTORE_CHROMA_URL"),
        "chroma_token": os.environ.get("TSTORE_CHROMA_TOKEN"),
        "encoder": os.environ.get("TSTORE_ENCODER") or None,  # the default encoder
        "actor": os.environ.get("TSTORE_ACTOR") or None,  # who the audit log names
        "test_tier": os.environ.get("TSTORE_TEST_TIER") or None,  # "fast": no model weights in this process
        "approx_from": os.environ.get("TSTORE_APPROX_FROM") or None,  # rows from which neighbours are approximate
    }


def _db_url_for(store_dir: Path, marker: dict | None, db_url: str | None, env: dict[str, str | None]) -> str:
    url = db_url or env["db_url"] or (marker or {}).get("db_url")
    if url:
        return normalise_url(url)
    return f"sqlite:///{(store_dir / paths.SQLITE_NAME).resolve()}"


class Store:
    """An open store: a directory (marker, SQLite file, Chroma data) and its database.

    The composition root: it opens the backend and builds each part with the collaborators that
    part uses. Parts are built on first use, so commands that need few of them start fast.
    """

    def __init__(self, store_dir: Path, engine: Engine, *, chroma_url: str | None = None, chroma_token: str | None = None,
                 encoder: str | None = None, actor: str | None = None, approx_from: str | None = None):
        # encoder: the default encoder of commands that name none; actor: who the audit log names
        self.dir = store_dir
        self.engine = engine
        self.chroma_url = chroma_url
        self.chroma_token = chroma_token
        self.preferred_encoder = encoder
        self.approx_from = approx_from  # TSTORE_APPROX_FROM: rows from which neighbours are approximate (None: the default)
        self.db = Database(engine, actor=actor)
        self.dirs = StoreDirs(store_dir)
        self.cluster: "RayCluster | None" = None  # `--ray ADDRESS`: see use_ray()
        self._cluster_parts: list = []  # what holds cluster resources (encoder actors): ended at close()

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
        read_only: bool = False,
    ) -> "Store":
        """Open a store. `read_only` (a server's view): the schema must be at head, and opening
        writes nothing, not even the default encoder's first registration."""
        env = _from_environment()
        refuse_weights(env["test_tier"])
        store_dir = paths.resolve_store_dir(store)
        marker = _read_marker(store_dir)
        engine = make_engine(_db_url_for(store_dir, marker, db_url, env))
        migrate.check_schema(engine, require_head=check_schema)
        opened = cls(
            store_dir,
            engine,
            chroma_url=chroma_url or env["chroma_url"] or marker.get("chroma_url"),
            chroma_token=chroma_token or env["chroma_token"],
            encoder=env["encoder"],
            actor=env["actor"],
            approx_from=env["approx_from"],
        )
        if check_schema and not read_only:
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
        revision = migrate.current_revision(self.engine)
        assert revision is not None  # just upgraded to head
        return revision

    def downgrade_schema(self, revision: str) -> list[str]:
        """Downgrade the database to `revision`. Down to base every encoder goes with its table:
        their vector collections are dropped first, so a later `init` starts clean (on a Chroma
        server, nothing of this store stays behind). Returns the encoders whose vectors went."""
        dropped: list[str] = []
        if migrate.resolve_revision(revision) is None:
            for info in self.encoders.registered_on_any_schema():
                self.embeddings.drop_vectors(info)
                dropped.append(info.name)
        migrate.downgrade(self.engine, revision)
        return dropped

    @property
    def db_url(self) -> str:
        return self.db.url

    @property
    def chroma_path(self) -> Path:
        return self.dirs.chroma

    def close(self) -> None:
        while self._cluster_parts:
            self._cluster_parts.pop().close()
        self.db.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transactions (the backend's, for the orchestration above the parts) -------------
    def session(self) -> AbstractContextManager[Session]:
        """A read-only unit of work (rolled back at the end)."""
        return self.db.session()

    def data_revision(self) -> int:
        return self.db.data_revision()

    # -- backend -------------------------------------------------------------------------
    @cached_property
    def writer_lock(self) -> "WriterLock":
        """One writer at a time on the embedded vector index: `backend/writer_lock.py`."""
        from taxonomy_store.backend.writer_lock import WriterLock

        shared = self.engine if self.engine.dialect.name == "postgresql" else None
        return WriterLock(self.dir, enabled=not self.chroma_url, shared_engine=shared)

    # The parts that take the cluster's functions, and the parts built on them.
    _SHARDED_PARTS = ("embeddings", "neighbours", "metric_runs", "guard", "evaluation", "adaptation", "pair_mining", "review",
                      "crosswalks", "coverage", "overlap")

    def use_ray(self, address: str) -> None:
        """Encode (`embed`) and compute exact kNN graphs (metrics) on the Ray cluster at address
        (`distributed/`); this process stays the one writer. Parts built before are rebuilt."""
        from taxonomy_store.distributed.cluster import RayCluster

        self.cluster = RayCluster(address)
        self.cluster.ray()  # connect now: a wrong address fails before any work starts
        for part in self._SHARDED_PARTS:
            self.__dict__.pop(part, None)

    @cached_property
    def vector_index(self) -> "VectorIndex":
        from taxonomy_store.backend.vector_index import VectorIndex

        return VectorIndex(self.dirs.chroma, self.writer_lock, chroma_url=self.chroma_url, chroma_token=self.chroma_token)

    @cached_property
    def live_encoders(self) -> "LiveEncoders":
        from taxonomy_store.backend.encoding import LiveEncoders
        from taxonomy_store.backend.model_refs import open_encoder

        return LiveEncoders(open_encoder)

    # -- parts ---------------------------------------------------------------------------
    @cached_property
    def taxonomies(self) -> "Taxonomies":
        """Load taxonomy definitions, list them, read their trees: `taxonomy/trees.py`."""
        from taxonomy_store.taxonomy.trees import Taxonomies

        return Taxonomies(self.db)

    @cached_property
    def imports(self) -> "Imports":
        """Importing data files into the store: `transfer/imports.py`."""
        from taxonomy_store.transfer.imports import Imports

        return Imports(self.db, self.taxonomies)

    @cached_property
    def exports(self) -> "Exports":
        """Writing prompts and pairs back out: `transfer/exports.py`."""
        from taxonomy_store.transfer.exports import Exports

        return Exports(self.db)

    @cached_property
    def curation(self) -> "Curation":
        """Edits of prompts and pairs, pair review, undo: `curation/edits.py`."""
        from taxonomy_store.curation.edits import Curation

        return Curation(self.db)

    @cached_property
    def encoders(self) -> "Encoders":
        """The encoder registry: `embeddings/encoders.py`. Removing an encoder drops its vectors from the index."""
        from taxonomy_store.embeddings.encoders import Encoders

        return Encoders(self.db, drop_vectors=lambda info, **wait: self.embeddings.drop_vectors(info, **wait),
                        preferred=self.preferred_encoder, store_dir=self.dir.resolve())

    @cached_property
    def embeddings(self) -> "Embeddings":
        """Per-encoder vector collections: embed, verify, read vectors: `embeddings/indexing.py`."""
        from taxonomy_store.embeddings.indexing import Embeddings

        encode_batches = None
        if self.cluster is not None:
            from taxonomy_store.distributed.encoding import RayBatchEncoder

            encode_batches = RayBatchEncoder(self.cluster)
            self._cluster_parts.append(encode_batches)
        from taxonomy_store.embeddings.vector_cache import VectorCache

        return Embeddings(self.db, self.encoders, self.vector_index, self.live_encoders, encode_batches,
                          cache=VectorCache(self.dirs.cache))

    @cached_property
    def metric_runs(self) -> "MetricRuns":
        """Metric runs from stored vectors: `measurement/runs.py`."""
        from taxonomy_store.measurement.runs import MetricRuns

        runs = MetricRuns(self.db, self.encoders, self.embeddings, self.neighbours)
        # held-out evaluations are metric runs another part computes: it reruns them when stale
        def rerun_evaluation(run: "RunResult", progress: "Progress" = None) -> "RunResult":
            return self.evaluation.rerun(run, progress)  # built on first use: evaluation needs metric_runs

        runs.rerunners["evaluate"] = rerun_evaluation
        runs.crosswalk = lambda target: self.crosswalks.accepted(target)  # `metrics cp --via-crosswalk`
        return runs

    @cached_property
    def guard(self) -> "Guard":
        """The guard: query (category vote, calibrated verdict) and calibrate: `guard/querying.py`."""
        from taxonomy_store.guard.querying import Guard

        guard = Guard(self.neighbours, self.encoders, self.embeddings)
        guard.crosswalk = lambda target: self.crosswalks.accepted(target)  # accepted crosswalks count in its votes
        return guard

    @cached_property
    def evaluation(self) -> "Evaluation":
        """Held-out evaluation of the guard, stored as metric runs: `taxonomy_store/guard/evaluation.py`."""
        from taxonomy_store.guard.evaluation import Evaluation

        return Evaluation(self.neighbours, self.encoders, self.metric_runs)

    @cached_property
    def neighbours(self) -> "Neighbours":
        """The one neighbour service (stored vectors, exact top-k, filters as masks; a faiss index above
        TSTORE_APPROX_FROM rows unless `exact_neighbours()`): `neighbours/service.py`."""
        from taxonomy_store.neighbours.approximate import NeighbourSettings, approx_from_setting
        from taxonomy_store.neighbours.graphs import GraphCache
        from taxonomy_store.neighbours.service import Neighbours

        settings = NeighbourSettings(approx_from=approx_from_setting(self.approx_from))
        knn = None
        if self.cluster is not None:
            from taxonomy_store.distributed.topk import RayTopK

            knn = RayTopK(self.cluster)
            settings.exact = True  # the cluster shards the exact top-k: results identical to a local exact run
        graphs = GraphCache(self.dirs.cache, settings, knn=knn) if knn is not None else GraphCache(self.dirs.cache, settings)
        return Neighbours(self.db, self.encoders, self.embeddings, graphs)

    def exact_neighbours(self, exact: bool = True) -> None:
        """`--exact`: every search and graph of this store object exact, whatever the size."""
        self.neighbours.settings.exact = bool(exact)

    @cached_property
    def adaptation(self) -> "Adaptation":
        """Tuning encoders on the store's data, exporting encoders: `taxonomy_store/adapt/adaptation.py`."""
        from taxonomy_store.adapt.adaptation import Adaptation

        return Adaptation(store_dir=self.dir, read=self.session, encoders=self.encoders, embeddings=self.embeddings,
                          metric_runs=self.metric_runs)

    @cached_property
    def pair_mining(self) -> "PairMining":
        """Candidate safe/unsafe twins mined from the store, proposed for review: `curation/pair_mining.py`."""
        from taxonomy_store.curation.pair_mining import PairMining

        def levels(name: str) -> list[str]:
            return next((list(t["levels"] or []) for t in self.taxonomies.list() if t["name"] == name), [])

        return PairMining(self.db, self.neighbours, levels)

    @cached_property
    def review(self) -> "Review":
        """Read-only views for the curators' TUI: suspects, neighbours, metric tables: `curation/review.py`."""
        from taxonomy_store.curation.review import Review

        return Review(self.db, self.taxonomies, self.encoders, self.embeddings, self.metric_runs, self.neighbours)

    @cached_property
    def crosswalks(self):
        """Crosswalk proposals and the reviewed mapping rows between taxonomies: `crosswalks/mappings.py`."""
        from taxonomy_store.crosswalks.mappings import Crosswalks

        return Crosswalks(self.db, self.encoders, self.neighbours)

    @cached_property
    def coverage(self):
        """Which prompts of a dataset or file the store does not cover: `crosswalks/coverage.py`."""
        from taxonomy_store.crosswalks.coverage import Coverage

        return Coverage(self.encoders, self.neighbours, self.embeddings)

    @cached_property
    def overlap(self):
        """Exact and near-duplicate prompts within and across datasets: `crosswalks/overlap.py`."""
        from taxonomy_store.crosswalks.overlap import Overlap

        return Overlap(self.db, self.encoders, self.neighbours)


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
    env = _from_environment()
    refuse_weights(env["test_tier"])
    url = _db_url_for(store_dir, marker, db_url, env)
    if not url.startswith("sqlite"):
        make_engine(url).dispose()  # fail before creating anything if the server is unreachable
    store_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    migrate.upgrade(engine)
    if marker is None:
        marker = {"format": 1, "created_at": datetime.now(timezone.utc).isoformat()}
        if db_url or env["db_url"]:
            marker["db_url"] = url
        if chroma_url:
            marker["chroma_url"] = chroma_url
        with paths.atomic_write(marker_path) as f:
            f.write(json.dumps(marker, indent=2) + "\n")
    opened = Store(store_dir, engine, chroma_url=chroma_url or marker.get("chroma_url"), encoder=env["encoder"], actor=env["actor"],
                   approx_from=env["approx_from"])
    opened.ensure_default_encoder()
    return opened


def open_store(store: str | os.PathLike | None = None, **kwargs) -> Store:
    return Store.open(store, **kwargs)
