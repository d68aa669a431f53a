"""What a `tstore serve` process is told: where the store is, which encoder, limits, batching, auth.

One frozen value, built by the CLI and handed to `create_app`; with several uvicorn workers it
travels to each worker as JSON in an environment variable (`from_env`), so every worker opens
the same store the same way.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field

from taxonomy_store.errors import InvalidValue
from taxonomy_store.importers.records import MAX_TEXT_CHARS

CONFIG_ENV = "TSTORE_SERVE_CONFIG"  # the JSON config a worker process reads (set by `tstore serve --workers N`)
TOKEN_ENV = "TSTORE_SERVE_TOKEN"
DEFAULT_MAX_BATCH = 256  # texts in one request
DEFAULT_BATCH_TEXTS = 64  # texts the batcher encodes in one call
DEFAULT_BATCH_WAIT_MS = 2.0  # how long a batch waits for more requests, only while under load
DEFAULT_POLL_S = 1.0  # how often the server looks for a new data revision
# On a CPU a small transformer runs fastest in small forward passes: the encoder sorts a batch's
# texts by length and pads each pass only to its own longest text (all-MiniLM-L6-v2 on 2 cores:
# ~2x the texts/s at 8 per pass than at 32). A GPU wants the encoder's own, larger batch size.
CPU_ENCODE_BATCH = 8


@dataclass(frozen=True)
class StoreLocation:
    """How to open the store (the CLI's --store / --db-url / --chroma-url / --chroma-token)."""

    store: str | None = None
    db_url: str | None = None
    chroma_url: str | None = None
    chroma_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ServeConfig:
    location: StoreLocation = StoreLocation()
    encoder: str | None = None  # None: the store's default encoder
    token: str | None = field(default=None, repr=False)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    threads: int | None = None  # torch and BLAS threads of a worker (None: their defaults)
    max_text_chars: int = MAX_TEXT_CHARS
    max_batch: int = DEFAULT_MAX_BATCH
    batch_texts: int = DEFAULT_BATCH_TEXTS
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS
    encode_batch: int | None = None  # texts per forward pass within a batch (None: 8 on CPU, the encoder's on a GPU)
    poll_s: float = DEFAULT_POLL_S
    flag_uncertain: bool = False  # does an `uncertain` verdict set OpenAI's `flagged`?

    def __post_init__(self) -> None:
        for name in ("max_text_chars", "max_batch", "batch_texts", "workers", "port"):
            if getattr(self, name) < 1:
                raise InvalidValue(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("threads", "encode_batch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InvalidValue(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.batch_wait_ms < 0 or self.poll_s <= 0:
            raise InvalidValue("batch-wait-ms must be >= 0 and poll interval > 0")
        if self.token is not None and not self.token.strip():
            raise InvalidValue("the token is empty", f"give a non-empty --token or unset {TOKEN_ENV}")

    def check_exposure(self) -> None:
        """Refuse to listen beyond this machine without a token."""
        if self.token is None and not is_loopback(self.host):
            raise InvalidValue(
                f"--host {self.host} listens beyond this machine and no token is set",
                f"give --token T (or set {TOKEN_ENV}) so clients must send `Authorization: Bearer T`, "
                "or serve on --host 127.0.0.1",
            )

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, environ=os.environ) -> "ServeConfig":
        raw = environ.get(CONFIG_ENV)
        if not raw:
            raise InvalidValue(f"{CONFIG_ENV} is not set", "start workers with `tstore serve --workers N`")
        data = json.loads(raw)
        data["location"] = StoreLocation(**data.get("location") or {})
        return cls(**data)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
