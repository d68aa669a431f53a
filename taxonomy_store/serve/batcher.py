"""Dynamic batching: concurrent requests share one encoder call.

Requests wait in a queue; one worker thread takes the first, then every request already queued
(up to `max_texts` texts), encodes all their distinct texts in ONE call, and answers each
request from the same snapshot. While it encodes, new requests queue up and form the next
batch, so under load batches grow by themselves (continuous batching, as text-embeddings-
inference does it). Only while under load (the last batch held more than one request) does a
batch wait up to `wait_ms` for more; an idle server answers a lone request at once.

Requests with different query options (k, level, filters) share the encoder call and are then
searched in groups, each through the guard's own `query`, so a verdict is exactly `tstore query`'s.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from taxonomy_store.errors import TStoreError
from taxonomy_store.serve.snapshot import Snapshot, SnapshotKeeper

log = logging.getLogger("tstore.serve")
MAX_QUEUED = 10_000  # requests waiting; beyond it the server answers 503 at once
_EMPTY = object()  # nothing came in time


class NotReady(TStoreError):
    """No snapshot is in service yet (the encoder or the vectors are still loading, or cannot be read)."""


class Overloaded(TStoreError):
    pass


@dataclass(frozen=True)
class QueryOptions:
    """The query options of a request; requests with equal options are searched together."""

    k: int = 10
    level: str | None = None
    taxonomy: str | None = None
    dataset: tuple[str, ...] = ()
    label: tuple[str, ...] = ()
    category: tuple[str, ...] = ()

    def kwargs(self) -> dict[str, Any]:
        return dict(k=self.k, level=self.level, taxonomy=self.taxonomy, dataset=list(self.dataset) or None,
                    label=list(self.label) or None, category=list(self.category) or None)


@dataclass
class Answer:
    results: list  # guard QueryResults, one per text, in order
    snapshot: Snapshot


@dataclass
class _Job:
    texts: list[str]
    options: QueryOptions
    ids: list[Any] | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


def _settle(future: asyncio.Future, value: Any, error: BaseException | None) -> None:
    if future.done():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class Batcher:
    def __init__(self, keeper: SnapshotKeeper, metrics, *, max_texts: int, wait_ms: float):
        self._keeper = keeper
        self._metrics = metrics
        self._max_texts = max_texts
        self._wait_s = wait_ms / 1000.0
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._carry: _Job | None = None  # a job that did not fit the last batch: first in the next
        self._under_load = False
        self._stopping = False
        self._queued = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tstore-batcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)

    async def submit(self, texts: list[str], options: QueryOptions, ids: list[Any] | None = None) -> Answer:
        if self._keeper.current is None:
            raise NotReady("the server is not ready yet: " + (self._keeper.last_error or "loading"), "retry in a few seconds")
        if self._queued >= MAX_QUEUED:
            raise Overloaded(f"{self._queued} requests are waiting", "retry later or start more servers")
        loop = asyncio.get_running_loop()
        job = _Job(list(texts), options, ids, loop, loop.create_future())
        self._queued += 1
        self._metrics.queue_depth.inc()
        self._queue.put(job)
        return await job.future

    # -- the worker thread --------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping:
            first = self._carry or self._queue.get()
            self._carry = None
            if first is None:
                return
            jobs = self._collect(first)
            self._queued -= len(jobs)
            self._metrics.queue_depth.dec(len(jobs))
            try:
                self._answer(jobs)
            except BaseException as exc:  # noqa: BLE001 - never leave a request hanging
                log.exception("batch failed")
                for job in jobs:
                    job.loop.call_soon_threadsafe(_settle, job.future, None, exc)

    def _next(self, deadline: float) -> "_Job | None | object":
        """The next queued job: now, or (only under load) within the batch's wait; _EMPTY when none comes."""
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            pass
        remaining = deadline - time.perf_counter()
        if not self._under_load or remaining <= 0:
            return _EMPTY
        try:
            return self._queue.get(timeout=remaining)
        except queue.Empty:
            return _EMPTY

    def _collect(self, first: _Job) -> list[_Job]:
        jobs, n = [first], len(first.texts)
        deadline = time.perf_counter() + self._wait_s
        while n < self._max_texts:
            got = self._next(deadline)
            if got is _EMPTY:
                break
            if not isinstance(got, _Job):  # None: stop, once this batch is answered
                self._stopping = True
                break
            job = got
            if n + len(job.texts) > self._max_texts:
                self._carry = job
                break
            jobs.append(job)
            n += len(job.texts)
        self._under_load = len(jobs) > 1
        return jobs

    def _answer(self, jobs: list[_Job]) -> None:
        snap = self._keeper.current
        if snap is None:  # never: a request is queued only once a snapshot is in service
            raise NotReady("no snapshot in service", "retry in a few seconds")
        unique = list(dict.fromkeys(t for job in jobs for t in job.texts))
        vectors = snap.encode(unique)
        self._metrics.batch_texts.observe(len(unique))
        self._metrics.batch_requests.observe(len(jobs))
        row = {t: i for i, t in enumerate(unique)}
        groups: dict[QueryOptions, list[_Job]] = {}
        for job in jobs:
            groups.setdefault(job.options, []).append(job)
        for options, group in groups.items():
            texts = [t for job in group for t in job.texts]
            try:
                results = snap.answer(texts, vectors[[row[t] for t in texts]], **options.kwargs())
            except Exception as exc:  # noqa: BLE001 - a bad option fails its own requests only
                for job in group:
                    job.loop.call_soon_threadsafe(_settle, job.future, None, exc)
                continue
            start = 0
            for job in group:
                mine = results[start:start + len(job.texts)]
                start += len(job.texts)
                for i, r in enumerate(mine):
                    r.index, r.id = i, job.ids[i] if job.ids is not None else None
                job.loop.call_soon_threadsafe(_settle, job.future, Answer(mine, snap), None)
