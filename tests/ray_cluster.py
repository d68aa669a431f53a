"""A real Ray cluster on loopback for the `ray` tests: a head and two workers, one CPU each.

Every node is a `ray start --block` process in a session of its own, so it is stopped by its
process group id (never `ray stop`, which would stop any other Ray on this machine). Start-up
and teardown are bounded in time; the temp dir (short: Unix socket paths) is removed at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 15


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRayCluster:
    def __init__(self, workers: int = 2, *, head_cpus: int = 1, object_store_bytes: int = 200_000_000):
        self.workers = workers
        self.head_cpus = head_cpus
        self.object_store_bytes = object_store_bytes
        self.temp = Path(tempfile.mkdtemp(prefix="tr", dir="/tmp"))
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")

    def _node(self, *args: str) -> None:
        # `python -m ray.scripts.scripts`: nodes (and so their workers) run this interpreter.
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--node-ip-address=127.0.0.1",
               f"--object-store-memory={self.object_store_bytes}", "--disable-usage-stats",
               f"--dashboard-agent-listen-port={_free_port()}", *args]
        log = open(self.temp / f"node{len(self.procs)}.log", "wb")
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True))

    def start(self) -> "LocalRayCluster":
        self._node("--head", f"--port={self.port}", f"--num-cpus={self.head_cpus}", "--include-dashboard=false",
                   f"--temp-dir={self.temp}", f"--ray-client-server-port={_free_port()}")
        try:
            self._wait_for(1)
            # One at a time: two raylets starting together on one IP can take each other's place.
            for n in range(self.workers):
                self._node(f"--address={self.address}", "--num-cpus=1")
                self._wait_for(2 + n)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for(self, nodes: int) -> None:
        import ray

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a Ray node exited at start-up (logs in {self.temp})")
            try:
                if not ray.is_initialized():
                    ray.init(address=self.address, log_to_driver=False, logging_level="WARNING")
                if sum(1 for n in ray.nodes() if n.get("Alive")) >= nodes:
                    return
            except Exception:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the local Ray cluster did not reach {nodes} nodes in {START_TIMEOUT_S} s (logs in {self.temp})")

    def stop(self) -> None:
        try:
            import ray

            ray.shutdown()
        finally:
            for p in reversed(self.procs):  # workers first, the head last
                self._stop(p)
            shutil.rmtree(self.temp, ignore_errors=True)

    @staticmethod
    def _stop(p: subprocess.Popen) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                return
            try:
                p.wait(timeout=STOP_TIMEOUT_S)
                return
            except subprocess.TimeoutExpired:
                continue
