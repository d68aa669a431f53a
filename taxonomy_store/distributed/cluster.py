"""A connection to a Ray cluster, opened on first use, and the errors its callers see."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taxonomy_store.errors import ClusterUnavailable, TStoreError

INSTALL_HINT = "install the extra: pip install 'taxonomy-store[ray]'"


@dataclass(frozen=True)
class Node:
    """An alive node of the cluster and what it offers."""

    node_id: str
    cpus: float
    gpus: float


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ClusterUnavailable("--ray needs the Ray package, which is not installed", INSTALL_HINT) from exc
    return ray


class RayCluster:
    """The Ray cluster at `address` ("HOST:PORT" of a head started with `ray start --head`, or
    "ray://HOST:10001" for Ray Client). Connected once per process, on first use."""

    def __init__(self, address: str):
        if not address or not address.strip():
            raise ClusterUnavailable("--ray needs the address of a Ray head (HOST:PORT)", "e.g. --ray 10.0.0.5:6379")
        self.address = address.strip()
        self._reachable = False

    def ray(self) -> Any:
        ray = import_ray()
        if not self._reachable:
            # Checked once per cluster object, whether or not this process already joined a
            # cluster: ray.init would retry a dead head for minutes.
            self._refuse_closed_port()
            self._reachable = True
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, log_to_driver=False, logging_level="WARNING", configure_logging=False)
            except Exception as exc:  # ConnectionError, ValueError, RuntimeError, depending on how it fails
                raise ClusterUnavailable(
                    f"cannot connect to the Ray cluster at {self.address}: {exc}",
                    "start one with `ray start --head` and give its HOST:PORT (see README, \"Ray\")",
                ) from exc
        return ray

    def _refuse_closed_port(self) -> None:
        """A HOST:PORT nobody listens on fails at once: ray.init would retry the head for minutes."""
        import socket
        from urllib.parse import urlsplit

        parts = urlsplit(self.address if "://" in self.address else f"ray://{self.address}")
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            return  # not HOST:PORT (e.g. "auto"): Ray decides
        if not host or port is None:
            return
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError as exc:
            raise ClusterUnavailable(
                f"cannot connect to the Ray cluster at {self.address}: nothing answers on {host}:{port} ({exc.strerror or exc})",
                "start one with `ray start --head` and give its HOST:PORT (see README, \"Ray\")",
            ) from exc

    def nodes(self) -> list[Node]:
        """Alive nodes with a CPU or a GPU to offer, in a stable order (GPUs first)."""
        found = [
            Node(str(n["NodeID"]), float(n["Resources"].get("CPU", 0)), float(n["Resources"].get("GPU", 0)))
            for n in self.ray().nodes() if n.get("Alive") and (n["Resources"].get("CPU") or n["Resources"].get("GPU"))
        ]
        if not found:
            raise ClusterUnavailable(f"the Ray cluster at {self.address} has no alive node with a CPU or GPU", "start workers with `ray start --address ...`")
        return sorted(found, key=lambda n: (-n.gpus, n.node_id))

    def cpus(self) -> int:
        return max(1, int(sum(n.cpus for n in self.nodes())))

    def get(self, ray: Any, ref: Any) -> Any:
        """ray.get of one result, a worker's tstore error raised as itself."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, TStoreError):
                raise exc.cause from None
            raise ClusterUnavailable(f"a Ray worker failed: {exc.cause!r}", "see the worker logs (`ray logs`)") from exc
        except ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, TStoreError):
                raise cause from None
            raise ClusterUnavailable(f"the Ray cluster at {self.address} failed: {exc}", "check `ray status` on the head") from exc
