"""One BLAS thread for query-sized products.

A search for a few query vectors is a matrix-vector product over the stored vectors: memory-bound,
so a second BLAS thread cannot make it faster, and OpenBLAS's threads fall asleep between the
blocks of a search (Python work runs between them), so each block waits for them to wake. Measured
on the 2-core development machine, one query over 55,000 × 384 vectors: 56 ms with the default two
threads, 9.5 ms with one; 64 queries: 125 vs 60 ms. Bigger batches keep the process's setting.

The limit is process-wide (BLAS has no per-thread setting), so concurrent searches share it: the
first one in lowers it, the last one out restores it.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

SMALL_BATCH = 256  # query rows: up to this many, one BLAS thread

_lock = threading.Lock()
_users = 0
_limiter: Any = None
_controller: Any = None


@contextmanager
def one_blas_thread() -> Iterator[None]:
    global _users, _limiter, _controller
    with _lock:
        if _users == 0:
            try:
                if _controller is None:
                    from threadpoolctl import ThreadpoolController

                    _controller = ThreadpoolController()
                _limiter = _controller.limit(limits=1, user_api="blas")
            except Exception:  # no threadpoolctl support for this BLAS: run as configured
                _limiter = None
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _limiter is not None:
                _limiter.restore_original_limits()
                _limiter = None
