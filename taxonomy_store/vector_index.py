"""Chroma access: one collection per encoder, explicit embeddings only, cosine space.

The embedded `PersistentClient` lives in `<store>/chroma`; with `store.chroma_url` set
(`--chroma-url` / `TSTORE_CHROMA_URL`) a Chroma server is used through `HttpClient`, with the
optional `store.chroma_token` sent as `Authorization: Bearer <token>`.

A collection is named `tstore_<encoder>_<fingerprint[:8]>_<registration key>`: the registration
key (a hash of the encoder row's id and creation time) keeps two stores that share one Chroma
server apart, and a store whose database moves keeps finding its collections. Its metadata
records the encoder's fingerprint and dimension; a collection that holds another model's
vectors is refused (EncoderMismatch).

chromadb is imported only inside these methods.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import urlparse

from .errors import EncoderMismatch, VectorStoreUnreachable

if TYPE_CHECKING:
    from .encoders import EncoderInfo
    from .store import Store

COLLECTION_PREFIX = "tstore_"
# Chroma metadata keys of each vector; cat_0..cat_{n} hold the category's ancestors by depth.
MAX_DEPTH_KEYS = 8
PAGE = 5000


def collection_name(info: "EncoderInfo") -> str:
    key = hashlib.sha256(f"{info.id}|{info.created_at}".encode()).hexdigest()[:8]
    return f"{COLLECTION_PREFIX}{info.name}_{(info.fingerprint or 'nofp')[:8]}_{key}"


class VectorIndex:
    def __init__(self, store: "Store"):
        self.store = store

    # -- the client ----------------------------------------------------------------------
    @cached_property
    def client(self):
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        url = self.store.chroma_url
        try:
            if not url:
                self.store.chroma_path.mkdir(parents=True, exist_ok=True)
                return chromadb.PersistentClient(path=str(self.store.chroma_path), settings=settings)
            parsed = urlparse(url if "://" in url else f"http://{url}")
            ssl = parsed.scheme == "https"
            headers = {"Authorization": f"Bearer {self.store.chroma_token}"} if self.store.chroma_token else None
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
            where = url or str(self.store.chroma_path)
            raise VectorStoreUnreachable(
                f"cannot use Chroma at {where}: {exc}",
                "start the server (`chroma run --path DIR --host 127.0.0.1 --port 8000`) or check --chroma-url / --chroma-token"
                if url
                else "check that the store directory is writable and not used by an incompatible chromadb version",
            ) from exc

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
                configuration={"hnsw": {"space": "cosine"}},
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

    def ids(self, coll) -> set[int]:
        out: set[int] = set()
        for page in self.pages(coll, include=[]):
            out.update(int(x) for x in page["ids"])
        return out


def _with_removals(meta: dict[str, Any]) -> dict[str, Any]:
    """Chroma merges metadata on update and upsert; None removes the cat_k keys a shallower category no longer has."""
    out = dict(meta)
    for k in range(MAX_DEPTH_KEYS):
        out.setdefault(f"cat_{k}", None)
    return out
