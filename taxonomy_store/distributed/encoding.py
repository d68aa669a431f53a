"""`embed --ray`: the write batches of `Embeddings.embed`, encoded by one actor per Ray node.

Each actor opens the registered encoder once (on a GPU where its node has one) and encodes the
batches it is sent; results come back in the order the batches were given, so the one writer
(the calling process, holding the store's writer lock) stores them batch by batch exactly as a
local embed does, and a killed run resumes the same way.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from taxonomy_store.errors import EncoderError, EncoderMismatch, TStoreError
from taxonomy_store.distributed.cluster import Node, RayCluster

if TYPE_CHECKING:
    from taxonomy_store.backend.encoder_info import EncoderInfo

# Batches queued per actor: one encoding, one waiting, so an actor never idles on a round trip.
IN_FLIGHT_PER_ACTOR = 2


class EncoderActor:
    """Runs in a Ray worker: the registered encoder, opened (and its weights checked) once."""

    def __init__(self, info: "EncoderInfo"):
        from taxonomy_store.backend.model_refs import open_encoder

        # A failed constructor reaches the caller only as "actor died"; a failed task carries its
        # exception, so a refusal (weights that differ from the registry) is raised by encode().
        self.encoder, self.error = None, None
        try:
            self.encoder = open_encoder(info)
        except TStoreError as exc:
            self.error = exc

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        if self.encoder is None:
            raise self.error or EncoderError("the encoder did not open on this Ray worker")
        return np.asarray(self.encoder.encode(texts, batch_size=batch_size), dtype=np.float32)


class RayBatchEncoder:
    """An `EncodeBatches` function for `Embeddings`: (encoder, batches of texts, forward batch size)
    -> their vectors, batch by batch, in order. Actors live as long as this object."""

    def __init__(self, cluster: RayCluster):
        self.cluster = cluster
        self._actors: dict[tuple[str, str | None], list[Any]] = {}

    def actors(self, info: "EncoderInfo") -> list[Any]:
        key = (info.name, info.fingerprint)
        if key not in self._actors:
            self.close()  # another encoder's actors hold the nodes' CPUs: theirs go first
            ray = self.cluster.ray()
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            remote = ray.remote(EncoderActor)
            self._actors[key] = [
                # A CPU node's actor takes all its CPUs (Ray sets its OMP_NUM_THREADS, so torch uses them).
                remote.options(
                    num_cpus=1 if node.gpus else max(1, int(node.cpus)), num_gpus=1 if node.gpus else 0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False),
                ).remote(_on(node, info))
                for node in self.cluster.nodes()
            ]
        return self._actors[key]

    def __call__(self, info: "EncoderInfo", batches: Iterable[list[str]], batch_size: int) -> Iterator[np.ndarray]:
        actors = self.actors(info)
        ray = self.cluster.ray()
        queued: deque[tuple[Any, int]] = deque()
        turn = 0
        for texts in batches:
            queued.append((actors[turn % len(actors)].encode.remote(list(texts), batch_size), len(texts)))
            turn += 1
            if len(queued) >= IN_FLIGHT_PER_ACTOR * len(actors):
                yield self._checked(info, ray, *queued.popleft())
        while queued:
            yield self._checked(info, ray, *queued.popleft())

    def _checked(self, info: "EncoderInfo", ray: Any, ref: Any, rows: int) -> np.ndarray:
        vecs = self.cluster.get(ray, ref)
        if vecs.ndim != 2 or vecs.shape[0] != rows or (info.dimension and vecs.shape[1] != info.dimension):
            raise EncoderMismatch(
                f"a Ray worker's encoder {info.name!r} returned vectors of shape {vecs.shape}, expected ({rows}, {info.dimension})",
                "install the same encoder package on every worker",
            )
        return vecs

    def close(self) -> None:
        """End the actors (they hold their nodes' CPUs or GPUs while they live)."""
        if not self._actors:
            return
        ray = self.cluster.ray()
        for actors in self._actors.values():
            for actor in actors:
                ray.kill(actor)
        self._actors.clear()


def _on(node: Node, info: "EncoderInfo") -> "EncoderInfo":
    """The encoder as the node runs it: on its GPU where it has one."""
    return dataclasses.replace(info, device="cuda") if node.gpus else info
