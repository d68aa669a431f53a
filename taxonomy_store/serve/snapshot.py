"""The server's view of the store: one immutable snapshot at a time, replaced off the request path.

A snapshot is the neighbour service's pool of one encoder (vectors, labels, categories, the
encoder row with its calibration, all read together) plus the loaded encoder. Requests never
read the database: the batcher takes `keeper.current` once per batch and answers the whole
batch from it, so an answer comes from the old snapshot or the new one, never from a mix.

A poller thread asks the store every `poll_s` seconds whether the data, the encoder row or its
vectors changed (one cheap query: the neighbour service's token). When they did it reads the
new pool, answers a warm-up query from it, and only then swaps the single reference. A read
that fails (an `embed` writing beside us, a database restart) keeps the old snapshot in
service and is retried on the next tick. The server never writes to the store.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from taxonomy_store.errors import InvalidValue, TStoreError
from taxonomy_store.guard.querying import Calibration, Guard, QueryResult
from taxonomy_store.vocabulary import DEFAULT_TAXONOMY, choose_level

log = logging.getLogger("tstore.serve")


@dataclass(frozen=True)
class Category:
    """A category of the moderation contract: a node of the voting taxonomy at the voting level."""

    code: str
    name: str
    path: tuple[str, ...]


class _PinnedNeighbours:
    """The neighbour service held at one pool: a guard built on it never reloads mid-request."""

    def __init__(self, pool, service):
        self._pool = pool
        self._service = service

    def pool(self, encoder: str):
        if encoder != self._pool.encoder:
            raise InvalidValue(f"this server answers with encoder {self._pool.encoder!r}, not {encoder!r}")
        return self._pool

    def nearest(self, *args, **kwargs):
        return self._service.nearest(*args, **kwargs)


class _Encoded:
    """Stands in for `store.embeddings` inside the guard: the batch's texts are encoded already."""

    def __init__(self, vectors: np.ndarray):
        self._vectors = vectors

    def live_encoder(self, info):
        return self

    def encode(self, texts) -> np.ndarray:
        if len(texts) != len(self._vectors):
            raise RuntimeError(f"{len(texts)} texts for {len(self._vectors)} vectors")
        return self._vectors


@dataclass(frozen=True)
class Snapshot:
    pool: Any  # neighbours.service.Pool
    encoder: Any  # the live Encoder of pool.info
    service: Any = field(repr=False)  # store.neighbours (its static searches)
    registry: Any = field(repr=False)  # store.encoders (read by nothing on the request path)
    taxonomy: str | None = None
    level: str | None = None
    categories: tuple[Category, ...] = ()
    encode_batch: int | None = None  # texts per forward pass (None: the encoder's batch size)
    loaded_at: float = field(default_factory=time.time)

    @classmethod
    def of(cls, pool, encoder, service, registry, encode_batch: int | None = None) -> "Snapshot":
        taxonomy, level, categories = _categories(pool)
        return cls(pool, encoder, service, registry, taxonomy, level, categories, encode_batch)

    @property
    def encoder_name(self) -> str:
        return self.pool.encoder

    @property
    def calibration(self) -> Calibration | None:
        return Calibration.from_dict(self.pool.info.calibration)

    @property
    def data_revision(self) -> int:
        return int(self.pool.data_revision)

    def stale_reason(self) -> str | None:
        """Why the calibration cannot be trusted as it stands (None: present and current)."""
        cal = self.calibration
        name = self.encoder_name
        if cal is None:
            return f"encoder {name!r} is not calibrated: run `tstore calibrate --encoder {name}`"
        if cal.fingerprint and self.pool.info.fingerprint and cal.fingerprint != self.pool.info.fingerprint:
            return f"the calibration of {name!r} was computed with other weights: run `tstore calibrate --encoder {name}`"
        if self.data_revision > cal.data_revision:
            return (f"the data changed since {name!r} was calibrated (revision {cal.data_revision} -> "
                    f"{self.data_revision}): run `tstore calibrate --encoder {name}`")
        return None

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.encoder.encode(texts, batch_size=self.encode_batch), dtype=np.float32)

    def answer(self, texts: list[str], vectors: np.ndarray, **params) -> list[QueryResult]:
        """`tstore query`'s results for texts already encoded by this snapshot's encoder."""
        guard = Guard(_PinnedNeighbours(self.pool, self.service), self.registry, _Encoded(vectors))  # type: ignore[arg-type]
        return guard.query(texts, encoder=self.encoder_name, **params)

    def info(self) -> dict[str, Any]:
        cal = self.calibration
        return {
            "encoder": self.encoder_name,
            "model_ref": self.pool.info.model_ref,
            "fingerprint": self.pool.info.fingerprint,
            "dimension": int(self.pool.vectors.shape[1]),
            "data_revision": self.data_revision,
            "calibration": None if cal is None else {
                "data_revision": cal.data_revision, "computed_at": cal.computed_at, "scorer": cal.scorer,
                "threshold": cal.threshold, "k": cal.k, "stale": self.stale_reason() is not None,
            },
            "prompts": len(self.pool),
            "prompts_without_vectors": int(self.pool.missing),
            "taxonomy": self.taxonomy,
            "level": self.level,
            "categories": [c.code for c in self.categories],
            "loaded_at": self.loaded_at,
        }


def _categories(pool) -> tuple[str | None, str | None, tuple[Category, ...]]:
    """The taxonomy that votes (the query's default), its voting level, and its categories there."""
    levels = pool.taxonomies.get(DEFAULT_TAXONOMY)
    if levels is None:
        return None, None, ()
    level = choose_level(levels)
    depth = levels.index(level) if level in levels else len(levels) - 1
    nodes = sorted(
        (n for n in pool.nodes.values() if n.taxonomy == DEFAULT_TAXONOMY and len(n.path) == depth + 1),
        key=lambda n: n.path,
    )
    return DEFAULT_TAXONOMY, level, tuple(Category(n.code, n.name, tuple(n.path)) for n in nodes)


def _default_encode_batch(info) -> int:
    from taxonomy_store.serve.config import CPU_ENCODE_BATCH

    return int(info.batch_size) if str(info.device or "cpu").startswith("cuda") else min(CPU_ENCODE_BATCH, int(info.batch_size or 32))


class SnapshotKeeper:
    """Holds the snapshot in service and replaces it when the store changes (a thread of its own)."""

    def __init__(self, store, encoder: str | None, *, poll_s: float, on_reload: Callable[[Snapshot], None] | None = None,
                 on_failure: Callable[[str], None] | None = None, encode_batch: int | None = None):
        self._store = store
        self._encode_batch = encode_batch
        self._encoder = encoder
        self._poll_s = poll_s
        self._on_reload = on_reload or (lambda snap: None)
        self._on_failure = on_failure or (lambda message: None)
        self.current: Snapshot | None = None
        self.last_error: str | None = "starting: loading the encoder and the vectors"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def encoder_name(self) -> str | None:
        return self._encoder

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tstore-snapshots", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self._poll_s)

    def refresh(self) -> bool:
        """Take a new snapshot into service if the store changed; True when one was."""
        try:
            if self._encoder is None:
                self._encoder = self._store.encoders.default_name()
            pool = self._store.neighbours.pool(self._encoder)
            old = self.current
            if old is not None and pool is old.pool:
                return False
            snap = Snapshot.of(pool, self._store.embeddings.live_encoder(pool.info), self._store.neighbours, self._store.encoders,
                               self._encode_batch or _default_encode_batch(pool.info))
            snap.answer(["warm-up"], pool.vectors[:1])  # masks and labels computed here, not on a request
            if old is None or old.encoder is not snap.encoder:
                snap.encode(["warm-up"])  # the model's first call is slow: not on a request either
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old snapshot in service
            message = str(exc) if isinstance(exc, TStoreError) else f"{type(exc).__name__}: {exc}"
            self.last_error = message
            log.warning("snapshot not refreshed: %s", message)
            self._on_failure(message)
            return False
        self.current = snap
        self.last_error = None
        log.info("snapshot in service: encoder %s, data revision %d, %d prompts", snap.encoder_name, snap.data_revision, len(pool))
        self._on_reload(snap)
        return True
