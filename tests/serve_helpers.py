"""Helpers of the `tstore serve` tests: a real uvicorn server in a thread or a process, texts to judge."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "seeds" / "demo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, *, timeout: float = 60.0, every: float = 0.1, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def _answers(base: str, path: str, token: str | None = None) -> httpx.Response | None:
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(base + path, timeout=5, headers=headers)
    except httpx.HTTPError:
        return None


def wait_ready(base: str, *, timeout: float = 60.0) -> None:
    """Until a snapshot is in service (the server answers; /readyz may still say the calibration is stale)."""
    wait_until(lambda: (r := _answers(base, "/readyz")) is not None and "encoder" in r.json(), timeout=timeout,
               what=f"{base} to load its snapshot")


@contextmanager
def serving_app(app, *, port: int | None = None):
    """Run an ASGI app under a real uvicorn server on a free loopback port, in a thread."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: server.started or not thread.is_alive(), timeout=30, what="uvicorn to start")
        assert thread.is_alive(), "uvicorn stopped at start-up"
        wait_ready(base)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@contextmanager
def serving_process(store_args: list[str], *extra: str, token: str | None = None, env: dict | None = None):
    """`tstore serve` as a real process (stopped by its PID at the end); yields (base url, process, log path)."""
    port = free_port()
    exe = Path(sys.executable).parent / "tstore"
    full_env = dict(os.environ, **(env or {}))
    if token:
        full_env["TSTORE_SERVE_TOKEN"] = token
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"tstore-serve-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(exe), *store_args, "serve", "--port", str(port), *extra], stdout=log,
                                stderr=subprocess.STDOUT, env=full_env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is not None or _answers(base, "/healthz") is not None, timeout=300,
                   what=f"`tstore serve` on port {port} (log {log_path})")
        assert proc.poll() is None, f"`tstore serve` exited: {log_path.read_text(errors='replace')[-2000:]}"
        wait_ready(base, timeout=300)
        yield base, proc, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def demo_texts(n: int = 300) -> list[str]:
    """Texts near the demo set but not in it (a word dropped, a phrase added), plus plain ones: a mix of verdicts."""
    texts: list[str] = []
    with open(DEMO / "prompts.csv", newline="", encoding="utf-8") as f:
        prompts = [row["text"] for row in csv.DictReader(f)]
    with open(DEMO / "pairs.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            prompts += [row["unsafe_prompt"], row["safe_prompt"]]
    for i, text in enumerate(prompts):
        words = text.split()
        texts.append(" ".join(words[1:]) if i % 3 == 0 and len(words) > 3 else
                     f"Quick question: {text}" if i % 3 == 1 else text.rstrip("?.!") + ", please?")
    plain = ["What is the capital of France?", "Write a haiku about autumn leaves.", "How do I boil an egg?",
             "Summarise the plot of Hamlet in two sentences.", "Translate 'good morning' into Spanish."]
    texts = plain + texts
    return texts[:n]


def chunks(items: list, sizes: list[int]):
    """Cut items into consecutive chunks of these sizes, cycling through them."""
    out, i, j = [], 0, 0
    while i < len(items):
        size = sizes[j % len(sizes)]
        out.append(items[i:i + size])
        i += size
        j += 1
    return out
