"""`store.embeddings`: keep each encoder's Chroma collection in step with SQL, and read vectors back.

SQL is the truth; a collection is derived data. The `embeddings` table records, per encoder and
prompt, the text hash and metadata hash that the collection holds. `embed` encodes only prompts
whose (encoder, prompt id, text hash) is not there yet, rewrites metadata in place when only the
label or category moved, and deletes vectors of deleted prompts.

Crash safety: each batch is written to Chroma first (an idempotent upsert), then its bookkeeping
in one SQL transaction. Killed between the two, a re-run finds the batch's bookkeeping missing
and encodes that batch again; nothing is duplicated because ids are prompt ids.

One writer at a time: embed and verify --repair hold the store's writer lock (see
`backend/writer_lock.py`) from reading the state they act on to their last write, so a second embed
that waited finds the first one's work done. `verify` reads every vector back and reports those
the index cannot read or that have another dimension; `--repair` re-embeds them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np
from sqlalchemy import delete, select, update

from taxonomy_store.catalog import NodeInfo, PromptRow, live_prompts, node_index
from taxonomy_store.db.models import Embedding, Encoder, Prompt, table_of
from taxonomy_store.errors import IndexOutOfSync, InvalidValue, NotEmbedded
from taxonomy_store.backend.database import Database
from taxonomy_store.backend.encoding import LiveEncoders, normalise_rows_in_place
from taxonomy_store.backend.vector_index import VectorIndex, collection_name
from taxonomy_store.backend.writer_lock import OnWait
from taxonomy_store.embeddings.vector_cache import Snapshot, VectorCache

if TYPE_CHECKING:
    from taxonomy_store.embeddings.encoders import EncoderInfo, Encoders

# A write batch of `embed` = this many forward passes of the encoder's batch size (unless given).
WRITE_BATCH_FORWARD_PASSES = 4

# progress(encoder name, prompts encoded so far, prompts to encode)
Progress = Callable[[str, int, int], None]
# encode_batches(encoder, write batches of texts, forward batch size) -> each batch's vectors
# (normalised float32), in the order given. Local by default; `distributed.encoding.RayBatchEncoder`
# encodes them on a Ray cluster while this process stays the one writer.
EncodeBatches = Callable[["EncoderInfo", Iterable[list[str]], int], Iterator[np.ndarray]]


@dataclass
class EmbedSummary:
    encoders: list[str] = field(default_factory=list)
    embedded: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    seconds: float = 0.0
    sentences_per_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _add(self, other: "EmbedSummary") -> None:
        self.encoders += other.encoders
        self.embedded += other.embedded
        self.updated += other.updated
        self.deleted += other.deleted
        self.unchanged += other.unchanged


PROBLEM_KINDS = ("missing", "orphaned", "stale", "wrong_metadata", "bookkeeping", "unreadable", "wrong_dimension")


@dataclass
class VerifyReport:
    encoder: str
    collection: str
    prompts: int  # live prompts in SQL
    vectors: int  # records in the Chroma collection
    missing: int = 0  # live prompt without a vector
    orphaned: int = 0  # vector of no live prompt
    stale: int = 0  # vector of an older text
    wrong_metadata: int = 0  # label / category / dataset differ from SQL
    bookkeeping: int = 0  # the embeddings table disagrees with the collection
    unreadable: int = 0  # listed by the collection, but its vector cannot be read back
    wrong_dimension: int = 0  # its vector has another dimension than the encoder's
    examples: dict[str, list[int]] = field(default_factory=dict)
    repaired: dict[str, int] | None = None  # what --repair changed (an EmbedSummary as a dict)

    @property
    def problems(self) -> int:
        return sum(getattr(self, k) for k in PROBLEM_KINDS)

    @property
    def ok(self) -> bool:
        return self.problems == 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        d["problems"] = self.problems
        return d


@dataclass(frozen=True)
class VectorSet:
    """Stored vectors of one encoder: rows ordered by prompt id, float32, L2-normalised."""

    prompt_ids: np.ndarray  # int64, shape (n,)
    vectors: np.ndarray  # float32, shape (n, d)
    encoder: str = ""
    # Live prompts that were asked for (all of them, without prompt_ids) but have no current vector.
    missing: int = 0
    stale: int = 0  # of those, the ones whose vector is of an older text

    def __len__(self) -> int:
        return len(self.prompt_ids)

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0

    def rows(self, prompt_ids: Iterable[int]) -> np.ndarray:
        """Row numbers of these prompt ids (KeyError for an id not in the set)."""
        ids = np.asarray(list(prompt_ids), dtype=np.int64)
        pos = np.searchsorted(self.prompt_ids, ids)
        bad = (pos >= len(self.prompt_ids)) | (self.prompt_ids[np.minimum(pos, len(self.prompt_ids) - 1)] != ids)
        if len(ids) and (len(self.prompt_ids) == 0 or bad.any()):
            raise KeyError(f"prompt ids without a vector: {ids[bad][:10].tolist()}")
        return pos

    def take(self, prompt_ids: Iterable[int]) -> np.ndarray:
        return self.vectors[self.rows(prompt_ids)]


# -- metadata ----------------------------------------------------------------------------------
def vector_metadata(row: PromptRow, nodes: dict[int, NodeInfo]) -> dict[str, Any]:
    """What Chroma stores beside a prompt's vector, for filtered queries (`where`)."""
    node = nodes.get(row.category_id) if row.category_id is not None else None
    meta: dict[str, Any] = {
        "label": row.label,
        "dataset": row.dataset or "",
        "category": node.code if node else "",
        "taxonomy": node.taxonomy if node else "",
        "text_sha256": row.text_sha256,
    }
    if node:
        for depth, code in enumerate(node.path):
            meta[f"cat_{depth}"] = code
    return meta


def meta_sha256(meta: dict[str, Any]) -> str:
    clean = {k: v for k, v in meta.items() if v is not None}
    return hashlib.sha256(json.dumps(clean, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def write_batches(items: list, batch: int, forward: int) -> list[list]:
    """`items` in write batches of `batch`, the last one cut to one forward pass: its write is the
    one no encoding overlaps, so it should be short."""
    parts = [items[i : i + batch] for i in range(0, len(items), batch)]
    if parts and len(parts[-1]) > forward:
        last = parts.pop()
        parts += [last[:-forward], last[-forward:]]
    return parts


def _yield_to_encoder() -> None:
    """Run the writer thread at a lower priority (Linux: per thread), so the encoder's threads keep the CPUs."""
    try:
        import threading

        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


def _compare(
    expected: dict[int, tuple[PromptRow, dict]], actual: dict[int, dict[str, Any]], book: dict[int, tuple[str, str]]
) -> dict[str, list[int]]:
    """Prompt ids per problem kind, from SQL (expected, book) against the collection's metadata (actual)."""
    found: dict[str, list[int]] = {k: [] for k in PROBLEM_KINDS}
    for pid, (r, meta) in expected.items():
        have = actual.get(pid)
        if have is None:
            found["missing"].append(pid)
        elif have.get("text_sha256") != r.text_sha256:
            found["stale"].append(pid)
        elif have != meta:
            found["wrong_metadata"].append(pid)
    found["orphaned"] = sorted(set(actual) - set(expected))
    for pid in sorted(set(book) | set(actual)):
        kept, have = book.get(pid), actual.get(pid)
        if kept is None or have is None:
            if pid in expected or kept is not None:  # an orphan without bookkeeping counts once, as orphaned
                found["bookkeeping"].append(pid)
        elif kept != (have.get("text_sha256"), meta_sha256(have)):
            found["bookkeeping"].append(pid)
    return found


class Embeddings:
    """`store.embeddings`: embed, verify, and read the vectors of each encoder."""

    # Write batch k to Chroma and SQL while batch k+1 is encoded (off: strictly one after the other).
    overlap_writes = True

    def __init__(
        self, db: Database, encoders: "Encoders", vectors: VectorIndex, live_encoders: LiveEncoders,
        encode_batches: EncodeBatches | None = None, cache: VectorCache | None = None,
    ):
        self.cache = cache  # a local copy of each collection, for full reads (vector_cache.py)
        self.db = db
        self.encoders = encoders
        self.vectors = vectors
        self._live_encoders = live_encoders
        self.encode_batches: EncodeBatches = encode_batches or self._encode_here

    def _encode_here(self, info: "EncoderInfo", batches: Iterable[list[str]], batch_size: int) -> Iterator[np.ndarray]:
        """The local encode_batches: the encoder loaded once in this process (at the first batch)."""
        live = None
        for texts in batches:
            if live is None:
                live = self.live_encoder(info)
            yield live.encode(texts, batch_size=batch_size)

    def reopen(self) -> None:
        """Reopen the Chroma client (a long-lived caller's refresh: the TUI's F5)."""
        self.vectors.reopen()

    # -- helpers -------------------------------------------------------------------------
    def _encoders(self, encoder: str | None, all: bool) -> list["EncoderInfo"]:
        enc = self.encoders
        if all:
            if encoder:
                raise InvalidValue("give either an encoder name or --all, not both")
            return enc.list()
        return [enc.get(encoder or enc.default_name())]

    def live_encoder(self, info: "EncoderInfo"):
        return self._live_encoders.get(info)

    def _sql_state(self, info: "EncoderInfo"):
        with self.db.session() as s:
            rows = live_prompts(s)
            nodes = node_index(s)
            book = {
                pid: (t, m)
                for pid, t, m in s.execute(
                    select(Embedding.prompt_id, Embedding.text_sha256, Embedding.meta_sha256).where(Embedding.encoder_id == info.id)
                )
            }
        return rows, nodes, book

    @staticmethod
    def _bump(session, info: "EncoderInfo") -> None:
        """The encoder's vectors changed: in-memory neighbour pools read them again (their token)."""
        session.execute(update(Encoder).where(Encoder.id == info.id).values(vectors_revision=Encoder.vectors_revision + 1))

    def _write_bookkeeping(self, info: "EncoderInfo", entries: list[tuple[int, str, str]], reason: str) -> None:
        if not entries:
            return
        ids = [e[0] for e in entries]
        with self.db.write(reason=reason) as (session, _audit):
            self._bump(session, info)
            for i in range(0, len(ids), 500):
                session.execute(
                    delete(Embedding).where(Embedding.encoder_id == info.id, Embedding.prompt_id.in_(ids[i : i + 500]))
                )
            session.execute(
                table_of(Embedding).insert(),
                [{"encoder_id": info.id, "prompt_id": p, "text_sha256": t, "meta_sha256": m} for p, t, m in entries],
            )

    def _drop_bookkeeping(self, info: "EncoderInfo", ids: list[int], reason: str) -> None:
        if not ids:
            return
        with self.db.write(reason=reason) as (session, _audit):
            self._bump(session, info)
            for i in range(0, len(ids), 500):
                session.execute(
                    delete(Embedding).where(Embedding.encoder_id == info.id, Embedding.prompt_id.in_(ids[i : i + 500]))
                )

    # -- embed ---------------------------------------------------------------------------
    def embed(
        self, encoder: str | None = None, *, all: bool = False, progress: Progress | None = None, batch_size: int | None = None,
        wait: bool = True, on_wait: OnWait | None = None,
    ) -> EmbedSummary:
        """Bring the encoder's collection (or every encoder's, with all=True) up to date with SQL.

        Holds the store's writer lock per encoder: with wait=False a busy lock raises WriterBusy
        at once; otherwise on_wait hears (once) that this call waits for another writer.
        """
        t0 = time.perf_counter()
        total = EmbedSummary()
        for info in self._encoders(encoder, all):
            with self.vectors.writing(f"embed {info.name}", wait=wait, on_wait=on_wait):
                total._add(self._embed_one(info, progress=progress, batch_size=batch_size))
        total.seconds = round(time.perf_counter() - t0, 3)
        total.sentences_per_s = round(total.embedded / total.seconds, 1) if total.seconds > 0 and total.embedded else 0.0
        return total

    def _embed_one(self, info: "EncoderInfo", *, progress: Progress | None, batch_size: int | None) -> EmbedSummary:
        # The write batch (the unit of crash safety) spans a few forward passes: Chroma pays per call.
        batch = int(batch_size or info.batch_size * WRITE_BATCH_FORWARD_PASSES)
        if batch < 1:
            raise InvalidValue(f"batch size must be at least 1, not {batch}")
        batch = min(batch, self.vectors.max_batch)
        forward = min(info.batch_size, batch)
        rows, nodes, book = self._sql_state(info)
        coll = self.vectors.collection(info)
        present = self.vectors.ids(coll)
        live_ids = {r.id for r in rows}
        summary = EmbedSummary(encoders=[info.name])
        reason = f"embed {info.name}"

        # Vectors of deleted prompts: out of Chroma first, then out of the bookkeeping.
        gone = sorted((present | set(book)) - live_ids)
        if gone:
            self.vectors.delete(coll, [i for i in gone if i in present])
            self._drop_bookkeeping(info, [i for i in gone if i in book], reason)
            summary.deleted = len(gone)

        to_encode: list[tuple[PromptRow, dict]] = []
        to_update: list[tuple[PromptRow, dict]] = []
        for r in rows:
            meta = vector_metadata(r, nodes)
            kept = book.get(r.id)
            if kept is None or r.id not in present or kept[0] != r.text_sha256:
                to_encode.append((r, meta))
            elif kept[1] != meta_sha256(meta):
                to_update.append((r, meta))
            else:
                summary.unchanged += 1

        if to_update:
            for i in range(0, len(to_update), self.vectors.max_batch):
                part = to_update[i : i + self.vectors.max_batch]
                self.vectors.update_metadata(coll, [r.id for r, _ in part], [m for _, m in part])
                self._write_bookkeeping(info, [(r.id, r.text_sha256, meta_sha256(m)) for r, m in part], reason)
            summary.updated = len(to_update)

        if to_encode:
            # Longest first, like SentenceTransformer.encode: batches of similar length pad less.
            to_encode.sort(key=lambda rm: -len(rm[0].text))
            done = 0
            if progress:
                progress(info.name, 0, len(to_encode))

            def write(part: list[tuple[PromptRow, dict]], vecs: np.ndarray) -> None:
                # Chroma first, then the bookkeeping: a kill in between only costs this batch again.
                self.vectors.upsert(coll, [r.id for r, _ in part], vecs, [m for _, m in part], present=present)
                self._write_bookkeeping(info, [(r.id, r.text_sha256, meta_sha256(m)) for r, m in part], reason)
                nonlocal done
                done += len(part)
                if progress:
                    progress(info.name, done, len(to_encode))

            # One writer thread: batch k is written while batch k+1 is encoded. At most one write is
            # in flight, so Chroma is never more than one batch ahead of the bookkeeping. The last
            # write overlaps nothing: it runs here, at this thread's priority, and is kept small.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tstore-embed-writer", initializer=_yield_to_encoder) as writer:
                pending = None
                parts = write_batches(to_encode, batch, forward)
                encoded = self.encode_batches(info, ([r.text for r, _ in part] for part in parts), forward)
                for n, (part, vecs) in enumerate(zip(parts, encoded)):
                    if pending is not None:
                        pending.result()
                    overlap = self.overlap_writes and n < len(parts) - 1
                    pending = writer.submit(write, part, vecs) if overlap else None
                    if pending is None:
                        write(part, vecs)
                if pending is not None:
                    pending.result()
            summary.embedded = len(to_encode)
        return summary

    # -- verify --------------------------------------------------------------------------
    def verify(
        self, encoder: str | None = None, *, repair: bool = False, all: bool = False, progress: Progress | None = None,
        wait: bool = True, on_wait: OnWait | None = None,
    ):
        """Compare SQL with the collection; with repair=True make them agree. A list with all=True.

        Without repair it only reads (never waits for a writer); repair holds the writer lock.
        """
        reports = []
        for info in self._encoders(encoder, all):
            if repair:
                with self.vectors.writing(f"verify --repair {info.name}", wait=wait, on_wait=on_wait):
                    reports.append(self._verify_one(info, repair=True, progress=progress))
            else:
                reports.append(self.vectors.read(lambda: self._verify_one(info, repair=False, progress=progress), info.name))
        return reports if all else reports[0]

    def drop_vectors(self, info: "EncoderInfo", *, wait: bool = True, on_wait: OnWait | None = None) -> bool:
        """Delete the encoder's collections (encoder remove), holding the writer lock."""
        with self.vectors.writing(f"encoder remove {info.name}", wait=wait, on_wait=on_wait):
            if self.cache is not None:
                self.cache.drop(collection_name(info))
            return self.vectors.drop(info)

    def _verify_one(self, info: "EncoderInfo", *, repair: bool, progress: Progress | None) -> VerifyReport:
        rows, nodes, book = self._sql_state(info)
        coll = self.vectors.collection(info, create=False)
        actual: dict[int, dict[str, Any]] = {}
        if coll is not None:
            for page in self.vectors.pages(coll, include=["metadatas"]):
                for pid, meta in zip(page["ids"], page["metadatas"]):
                    actual[int(pid)] = dict(meta or {})
        expected = {r.id: (r, vector_metadata(r, nodes)) for r in rows}
        report = VerifyReport(info.name, collection_name(info), prompts=len(rows), vectors=len(actual))
        found = _compare(expected, actual, book)
        if coll is not None:
            found["unreadable"], found["wrong_dimension"] = self._read_back(info, coll, sorted(actual))
        for k in PROBLEM_KINDS:
            setattr(report, k, len(found[k]))
            if found[k]:
                report.examples[k] = found[k][:10]
        if repair and not report.ok:
            report.repaired = self._repair(info, actual, found, progress).to_dict()
        return report

    def _read_back(self, info: "EncoderInfo", coll, ids: list[int]) -> tuple[list[int], list[int]]:
        """Every vector read back: (unreadable ids, wrong-dimension ids)."""
        unreadable, wrong = self.vectors.read_back(coll, ids, info.dimension)
        if unreadable:  # a client left stale by another process's write: ask a fresh one before calling them lost
            self.vectors.reopen()
            coll = self.vectors.collection(info, create=False)
            unreadable, more = self.vectors.read_back(coll, unreadable, info.dimension)
            wrong = sorted(set(wrong) | set(more))
        return unreadable, wrong

    def _repair(
        self, info: "EncoderInfo", actual: dict[int, dict[str, Any]], found: dict[str, list[int]], progress: Progress | None
    ) -> EmbedSummary:
        """Drop vectors that cannot be used, make the bookkeeping describe the rest, then let embed fix what is left."""
        reason = f"verify --repair {info.name}"
        if found["wrong_dimension"]:
            # Chroma fixes a collection's dimension at its first vector: only a new collection takes the right one.
            self.vectors.drop(info)
            actual = {}
        elif found["unreadable"]:
            coll = self.vectors.collection(info, create=False)
            self.vectors.delete(coll, found["unreadable"])
            actual = {pid: meta for pid, meta in actual.items() if pid not in set(found["unreadable"])}
        with self.db.session() as s:
            known = set(s.scalars(select(Prompt.id).where(Prompt.id.in_(list(actual))))) if actual else set()
        entries = [(pid, meta.get("text_sha256") or "", meta_sha256(meta)) for pid, meta in actual.items() if pid in known]
        with self.db.write(reason=reason) as (session, _audit):
            self._bump(session, info)
            session.execute(delete(Embedding).where(Embedding.encoder_id == info.id))
        for i in range(0, len(entries), 5000):
            self._write_bookkeeping(info, entries[i : i + 5000], reason)
        return self._embed_one(info, progress=progress, batch_size=None)

    def check(self, encoder: str | None = None) -> VerifyReport:
        """verify(), raising IndexOutOfSync when anything disagrees."""
        report = self.verify(encoder)
        if not report.ok:
            kinds = ", ".join(f"{getattr(report, k)} {k}" for k in PROBLEM_KINDS if getattr(report, k))
            raise IndexOutOfSync(
                f"encoder {report.encoder}: SQL and Chroma disagree ({kinds})",
                f"run `tstore verify --encoder {report.encoder} --repair`",
            )
        return report

    # -- reading -------------------------------------------------------------------------
    def load_vectors(self, encoder: str, *, prompt_ids: Iterable[int] | None = None) -> VectorSet:
        """The stored vectors of live prompts, read from Chroma in pages, never re-encoded.

        With prompt_ids: exactly those prompts, or NotEmbedded when one has no vector of its
        current text. Without: every live prompt that has a current vector; `missing` counts
        the live prompts left out (not embedded yet, or edited since), so callers can refuse.
        """
        info = self.encoders.get(encoder)
        wanted_ids = None if prompt_ids is None else sorted({int(i) for i in prompt_ids})
        with self.db.session() as s:
            rows = live_prompts(s, ids=wanted_ids)
        wanted = {r.id: r.text_sha256 for r in rows}
        if wanted_ids is not None and len(wanted) != len(wanted_ids):
            gone = [i for i in wanted_ids if i not in wanted]
            raise NotEmbedded(f"{len(gone)} requested prompts are deleted or unknown (e.g. {gone[:5]})", "ask only for live prompts")
        vs = self.vectors_of(info, wanted, every=wanted_ids is None)
        if vs.missing and wanted_ids is not None:
            raise NotEmbedded(
                f"{vs.missing} of {len(wanted)} prompts have no vector of their current text for encoder {info.name!r}"
                + (f" ({vs.stale} stale)" if vs.stale else ""),
                f"run `tstore embed --encoder {info.name}`",
            )
        return vs

    def vectors_of(self, info: "EncoderInfo", wanted: dict[int, str], *, every: bool = False) -> VectorSet:
        """The stored vectors of these prompts' current texts (prompt id -> text hash, as the caller
        read them from SQL), in one pass over the collection; `missing` counts the prompts left out.
        every=True: `wanted` is every live prompt: the whole collection is read, from the local copy
        at the encoder's current vectors_revision when there is one (vector_cache.py)."""
        dim = info.dimension or 0
        if every and self.cache is not None and wanted:
            ids, vecs, stale = self._current_of(self._snapshot(info), wanted)
        else:
            ids_asked = None if every else sorted(wanted)
            got_ids, chunks, stale = self.vectors.read(lambda: self._read_current(info, wanted, ids_asked), info.name)
            ids = np.asarray(got_ids, dtype=np.int64)
            vecs = np.concatenate(chunks) if chunks else np.zeros((0, dim), dtype=np.float32)
        # at a million vectors each copy is 1.5 GB: the vectors read are this call's own, so they are put
        # in order only when out of order, and normalised in place (the same float32 division)
        if len(ids) > 1 and not bool((ids[1:] > ids[:-1]).all()):
            order = np.argsort(ids, kind="stable")
            ids, vecs = ids[order], vecs[order]
        return VectorSet(
            prompt_ids=ids, vectors=normalise_rows_in_place(vecs) if len(ids) else vecs, encoder=info.name,
            missing=len(wanted) - len(ids), stale=stale,
        )

    def _vectors_revision(self, info: "EncoderInfo") -> int | None:
        with self.db.session() as s:
            return s.scalar(select(Encoder.vectors_revision).where(Encoder.id == info.id))

    def _snapshot(self, info: "EncoderInfo") -> Snapshot:
        """Every vector of the collection: the local copy at the current revision, else read from
        Chroma (and saved, when no bookkeeping write came in while it was read)."""
        assert self.cache is not None
        name, dim = collection_name(info), info.dimension or 0
        revision = self._vectors_revision(info)
        snap = self.cache.load(name, revision, dim) if revision is not None else None
        if snap is None:
            snap = self.vectors.read(lambda: self._read_all(info), info.name)
            self.vectors.release_after_full_read(len(snap.ids))
            if revision is not None and self._vectors_revision(info) == revision:
                self.cache.save(name, revision, snap)
        return snap

    def _read_all(self, info: "EncoderInfo") -> Snapshot:
        coll = self.vectors.collection(info, create=False)
        ids: list[int] = []
        shas: list[str] = []
        chunks: list[np.ndarray] = []
        if coll is not None:
            for page in self.vectors.pages(coll, include=["embeddings", "metadatas"]):
                ids.extend(int(p) for p in page["ids"])
                shas.extend(str((m or {}).get("text_sha256") or "") for m in page["metadatas"])
                if len(page["ids"]):
                    chunks.append(np.asarray(page["embeddings"], dtype=np.float32))
        vectors = np.concatenate(chunks) if chunks else np.zeros((0, info.dimension or 0), dtype=np.float32)
        return Snapshot(np.asarray(ids, dtype=np.int64), np.asarray(shas, dtype="S64"), vectors)

    @staticmethod
    def _current_of(snap: Snapshot, wanted: dict[int, str]) -> tuple[np.ndarray, np.ndarray, int]:
        """(ids, vectors, how many were stale) of the snapshot's vectors of the wanted texts."""
        keep = np.zeros(len(snap.ids), dtype=bool)
        stale = 0
        for n, (pid, sha) in enumerate(zip(snap.ids.tolist(), snap.shas.tolist())):
            want = wanted.get(pid)
            if want is None:
                continue
            if sha.decode() != want:
                stale += 1
                continue
            keep[n] = True
        if keep.all():
            return snap.ids, snap.vectors, stale  # every vector current: no copy
        return snap.ids[keep], snap.vectors[keep], stale

    def _read_current(
        self, info: "EncoderInfo", wanted: dict[int, str], wanted_ids: list[int] | None
    ) -> tuple[list[int], list[np.ndarray], int]:
        """(prompt ids, their vectors in chunks, how many were stale) of the vectors of the wanted texts."""
        coll = self.vectors.collection(info, create=False)
        got_ids: list[int] = []
        chunks: list[np.ndarray] = []
        stale = 0
        if coll is None or not wanted:
            return got_ids, chunks, stale
        for page in self.vectors.pages(coll, include=["embeddings", "metadatas"], ids=wanted_ids):
            keep = []
            for n, (pid, meta) in enumerate(zip(page["ids"], page["metadatas"])):
                pid = int(pid)
                if pid not in wanted:
                    continue
                if (meta or {}).get("text_sha256") != wanted[pid]:
                    stale += 1
                    continue
                keep.append(n)
                got_ids.append(pid)
            if keep:
                chunks.append(np.asarray(page["embeddings"], dtype=np.float32)[keep])
        return got_ids, chunks, stale
