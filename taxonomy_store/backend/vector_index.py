"""Chroma access: one collection per encoder, explicit embeddings only, cosine space.

The embedded `PersistentClient` lives in `<store>/chroma`; with `store.chroma_url` set
(`--chroma-url` / `TSTORE_CHROMA_URL`) a Chroma server is used through `HttpClient`, with the
optional `store.chroma_token` sent as `Authorization: Bearer <token>`.

A collection is named `tstore_<encoder>_<fingerprint[:8]>_<registration key>`: the registration
key (a hash of the encoder row's id and creation time) keeps two stores that share one Chroma
server apart, and a store whose database moves keeps finding its collections. Its metadata
records the encoder's fingerprint and dimension; a collection that holds another model's
vectors is refused (EncoderMismatch).

Writes to the embedded client happen inside `writing()`, which holds the store's writer lock
(`writer_lock.py`) and reloads the client from disk first. Reads go through `read()`: a client
that another process's write left stale (its index in memory predates the write) is reopened
when the lock's generation moved, and once more on an internal error, before the error is
reported as damage. Against a server, a lost connection becomes VectorStoreUnreachable.

chromadb is imported only inside these methods.
"""

from __future__ import annotations

import gc
import hashlib
import threading
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar
from urllib.parse import urlparse

from taxonomy_store.errors import EncoderMismatch, IndexDamaged, TStoreError, VectorStoreUnreachable
from taxonomy_store.backend.writer_lock import OnWait, WriterLock

if TYPE_CHECKING:
    from pathlib import Path

    from taxonomy_store.backend.encoder_info import EncoderInfo

T = TypeVar("T")
# chromadb keeps one in-memory system per path in a class-level dict (SharedSystemClient) and
# neither its creation nor our reopen() is thread safe: a client created in one thread while
# another thread's reopen() forgets the path raised KeyError inside chromadb (found in CI: a
# server polling for outside writes beside an embed in the same process). Every creation of an
# embedded client and every forgetting of one holds this lock.
_SHARED_SYSTEMS = threading.Lock()
COLLECTION_PREFIX = "tstore_"
# Chroma metadata keys of each vector; cat_0..cat_{n} hold the category's ancestors by depth.
MAX_DEPTH_KEYS = 8
PAGE = 5000
# Chroma builds its own HNSW search index of every collection as vectors are written. tstore never
# asks Chroma for neighbours (neighbours/ searches the stored vectors), so that index is kept as
# small as Chroma allows: upserting 30,000 vectors took 25.6 s (21.5 CPU-s) with Chroma's defaults
# and 7.9 s (5.3 CPU-s) with these (benchmarks/embed.py has the effect on `tstore embed`). A client
# that queries a collection directly gets answers of low recall; collections created before keep
# their own settings.
CHROMA_HNSW = {"space": "cosine", "ef_construction": 8, "max_neighbors": 4}


def collection_name(info: "EncoderInfo") -> str:
    key = hashlib.sha256(f"{info.id}|{info.created_at}".encode()).hexdigest()[:8]
    return f"{COLLECTION_PREFIX}{info.name}_{(info.fingerprint or 'nofp')[:8]}_{key}"


# A full read of at least this many vectors drops the embedded client afterwards (`release_after_full_read`)
RELEASE_AFTER = 100_000


class VectorIndex:
    def __init__(self, chroma_path: "Path", writer_lock: WriterLock, *, chroma_url: str | None = None, chroma_token: str | None = None):
        self.chroma_path = chroma_path
        self.chroma_url = chroma_url
        self.chroma_token = chroma_token
        self.writer_lock = writer_lock
        self._generation = self.writer_lock.generation()

    # -- the client ----------------------------------------------------------------------
    @cached_property
    def client(self):
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        url = self.chroma_url
        try:
            if not url:
                self.chroma_path.mkdir(parents=True, exist_ok=True)
                with _SHARED_SYSTEMS:
                    return chromadb.PersistentClient(path=str(self.chroma_path), settings=settings)
            parsed = urlparse(url if "://" in url else f"http://{url}")
            ssl = parsed.scheme == "https"
            headers = {"Authorization": f"Bearer {self.chroma_token}"} if self.chroma_token else None
            client = chromadb.HttpClient(
                host=parsed.hostname or "localhost",
                port=parsed.port or (443 if ssl else 8000),
                ssl=ssl,
                headers=headers,
                settings=settings,
            )
            client.heartbeat()
            return client
        except Exception as exc:
            where = url or str(self.chroma_path)
            raise VectorStoreUnreachable(
                f"cannot use Chroma at {where}: {exc}",
                "start the server (`chroma run --path DIR --host 127.0.0.1 --port 8000`) or check --chroma-url / --chroma-token"
                if url
                else "check that the store directory is writable and not used by an incompatible chromadb version",
            ) from exc

    def reopen(self) -> None:
        """Drop the client; the next use opens a fresh one, which reads the index from disk."""
        client = self.__dict__.pop("client", None)
        self._generation = self.writer_lock.generation()
        if client is None or self.chroma_url:
            return
        # chromadb shares one in-memory system per path among a process's clients: forget it, so the
        # next client starts from disk. It is not closed: a read still running in another thread
        # (a TUI worker) finishes on it, and it is freed with its last collection.
        try:
            from chromadb.api.shared_system_client import SharedSystemClient

            with _SHARED_SYSTEMS:
                SharedSystemClient._identifier_to_system.pop(client._identifier, None)
                SharedSystemClient._identifier_to_refcount.pop(client._identifier, None)
        except Exception:
            client.close()

    def release_after_full_read(self, vectors: int) -> bool:
        """After every vector of a large collection was read (`vectors` of them), drop the embedded
        client: it keeps what it loaded (0.24 GB of 1.14 GB resident after reading 178,872 x 384,
        docs/BENCHMARKS.md), which the caller now holds itself. The next use opens it again from disk.
        A Chroma server's client holds nothing: kept. True when dropped."""
        if self.chroma_url or vectors < RELEASE_AFTER or "client" not in self.__dict__:
            return False
        self.reopen()
        gc.collect()  # the client sits in reference cycles: freed now, not at some later collection
        return True

    def _refresh_if_stale(self) -> None:
        if "client" in self.__dict__ and not self.chroma_url and self.writer_lock.generation() != self._generation:
            self.reopen()

    @contextmanager
    def writing(self, what: str, *, wait: bool = True, on_wait: OnWait | None = None) -> Iterator[None]:
        """Hold the store's writer lock for a write to the embedded index, on a client that read the index after taking it."""
        with self.writer_lock.hold(what, wait=wait, on_wait=on_wait) as took:
            if took and "client" in self.__dict__:
                self.reopen()
            with self.guard():
                yield

    @contextmanager
    def guard(self, encoder: str | None = None) -> Iterator[None]:
        """Chroma failures as domain errors: a lost server, or vectors the embedded index cannot read."""
        try:
            yield
        except TStoreError:
            raise
        except Exception as exc:
            raise self._translate(exc, encoder) or exc

    def _translate(self, exc: BaseException, encoder: str | None = None) -> TStoreError | None:
        url = self.chroma_url
        if url and _is_connection_error(exc):
            return VectorStoreUnreachable(
                f"lost the Chroma server at {url}: {type(exc).__name__}: {_first_line(exc)}",
                f"start the server at {url} again (or check --chroma-url), then run the command again: "
                "`tstore embed` picks up where it stopped",
            )
        if _is_internal_error(exc):
            which = f"--encoder {encoder}" if encoder else "--all"
            return IndexDamaged(
                f"the vector index{f' of encoder {encoder}' if encoder else ''} cannot read some stored vectors ({_first_line(exc)})",
                f"run `tstore verify {which} --repair` to re-embed them",
            )
        return None

    def read(self, fn: Callable[[], T], encoder: str | None = None) -> T:
        """Run a read; on an embedded client's internal error reopen the client and try once more."""
        self._refresh_if_stale()
        with self.guard(encoder):
            try:
                return fn()
            except Exception as exc:
                if self.chroma_url or not _is_internal_error(exc):
                    raise
            self.reopen()
            return fn()

    @cached_property
    def max_batch(self) -> int:
        try:
            return max(1, min(int(self.client.get_max_batch_size()) - 1, PAGE))
        except Exception:
            return 1000

    # -- collections ---------------------------------------------------------------------
    def collection(self, info: "EncoderInfo", *, create: bool = True):
        """The encoder's collection (created on first use); None when absent and create=False."""
        name = collection_name(info)
        if create:
            coll = self.client.get_or_create_collection(
                name,
                embedding_function=None,
                configuration={"hnsw": dict(CHROMA_HNSW)},
                metadata={"tstore_encoder": info.name, "tstore_fingerprint": info.fingerprint or "", "tstore_dimension": info.dimension or 0},
            )
        else:
            try:
                coll = self.client.get_collection(name, embedding_function=None)
            except Exception as exc:  # chromadb raises NotFoundError (a ValueError subclass in older versions)
                if "does not exist" in str(exc) or type(exc).__name__ in ("NotFoundError", "InvalidCollectionException"):
                    return None
                raise
        meta = coll.metadata or {}
        if meta.get("tstore_fingerprint") and info.fingerprint and meta["tstore_fingerprint"] != info.fingerprint:
            raise EncoderMismatch(
                f"the Chroma collection {name} holds vectors of another model than encoder {info.name!r}",
                f"remove and re-add the encoder (`tstore encoder remove {info.name}`), then `tstore embed --encoder {info.name}`",
            )
        return coll

    def drop(self, info: "EncoderInfo") -> bool:
        """Delete every collection of this encoder registration (the fingerprint may have moved on)."""
        prefix = f"{COLLECTION_PREFIX}{info.name}_"
        suffix = collection_name(info)[-8:]
        dropped = False
        for c in self.client.list_collections():
            name = c if isinstance(c, str) else c.name
            if name.startswith(prefix) and name.endswith(suffix):
                self.client.delete_collection(name)
                dropped = True
        return dropped

    # -- writing -------------------------------------------------------------------------
    def upsert(self, coll, ids: list[int], embeddings, metadatas: list[dict[str, Any]], *, present: set[int] | None = None) -> None:
        """Write vectors; ids in `present` (None: all) may hold old metadata keys, which are removed."""
        for i in range(0, len(ids), self.max_batch):
            j = i + self.max_batch
            metas = [m if present is not None and pid not in present else _with_removals(m) for pid, m in zip(ids[i:j], metadatas[i:j])]
            coll.upsert(ids=[str(x) for x in ids[i:j]], embeddings=embeddings[i:j], metadatas=metas)

    def update_metadata(self, coll, ids: list[int], metadatas: list[dict[str, Any]]) -> None:
        for i in range(0, len(ids), self.max_batch):
            j = i + self.max_batch
            coll.update(ids=[str(x) for x in ids[i:j]], metadatas=[_with_removals(m) for m in metadatas[i:j]])

    def delete(self, coll, ids: list[int]) -> None:
        for i in range(0, len(ids), self.max_batch):
            coll.delete(ids=[str(x) for x in ids[i : i + self.max_batch]])

    # -- reading -------------------------------------------------------------------------
    def pages(self, coll, include: list[str], ids: list[int] | None = None) -> Iterator[dict[str, Any]]:
        """The collection's records in pages (all of them, or those ids)."""
        if ids is not None:
            for i in range(0, len(ids), self.max_batch):
                yield coll.get(ids=[str(x) for x in ids[i : i + self.max_batch]], include=include)
            return
        offset = 0
        while True:
            page = coll.get(include=include, limit=self.max_batch, offset=offset)
            if not page["ids"]:
                return
            yield page
            offset += len(page["ids"])
            if len(page["ids"]) < self.max_batch:
                return

    def read_back(self, coll, ids: list[int], dimension: int | None) -> tuple[list[int], list[int]]:
        """Read these ids' vectors back in batches: (unreadable ids, ids whose vector has another dimension).

        A batch that fails is halved until each failing id stands alone, so one damaged vector
        costs a few extra reads, not one read per vector.
        """
        unreadable: list[int] = []
        wrong: list[int] = []
        todo = [ids[i : i + self.max_batch] for i in range(0, len(ids), self.max_batch)][::-1]
        while todo:
            part = todo.pop()
            try:
                page = coll.get(ids=[str(x) for x in part], include=["embeddings"])
            except Exception as exc:
                if not _is_internal_error(exc):
                    raise
                if len(part) == 1:
                    unreadable.append(part[0])
                else:
                    todo += [part[len(part) // 2 :], part[: len(part) // 2]]
                continue
            got = set()
            for pid, emb in zip(page["ids"], page["embeddings"]):
                if emb is None:
                    continue
                got.add(int(pid))
                if dimension and len(emb) != dimension:
                    wrong.append(int(pid))
            unreadable += [x for x in part if x not in got]
        return sorted(unreadable), sorted(wrong)

    def ids(self, coll) -> set[int]:
        out: set[int] = set()
        for page in self.pages(coll, include=[]):
            out.update(int(x) for x in page["ids"])
        return out


def _is_internal_error(exc: BaseException) -> bool:
    return type(exc).__name__ == "InternalError" and type(exc).__module__.startswith("chromadb")


def _is_connection_error(exc: BaseException | None) -> bool:
    """A transport failure talking to the server (httpx's, or the OS's), wherever in the chain."""
    seen = 0
    while exc is not None and seen < 5:
        mod = type(exc).__module__ or ""
        if mod.startswith(("httpx", "httpcore")) or isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _with_removals(meta: dict[str, Any]) -> dict[str, Any]:
    """Chroma merges metadata on update and upsert; None removes the cat_k keys a shallower category no longer has."""
    out = dict(meta)
    for k in range(MAX_DEPTH_KEYS):
        out.setdefault(f"cat_{k}", None)
    return out
