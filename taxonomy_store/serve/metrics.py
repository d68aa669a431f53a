"""Prometheus metrics of one server process, in a registry of its own (so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("tstore_requests", "HTTP requests answered, by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("tstore_request_seconds", "Time from request to response, by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.verdicts = Counter("tstore_verdicts", "Verdicts given, by verdict", ["verdict"], registry=r)
        self.texts = Counter("tstore_texts", "Texts judged", registry=r)
        self.batch_texts = Histogram("tstore_batch_texts", "Texts encoded together in one encoder call",
                                     buckets=BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("tstore_batch_requests", "Requests answered by one encoder call",
                                        buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("tstore_queue_depth", "Requests waiting for the encoder", registry=r)
        self.reloads = Counter("tstore_reloads", "New snapshots of the store taken into service", registry=r)
        self.reload_failures = Counter("tstore_reload_failures", "Attempts to read a new snapshot that failed "
                                       "(the previous snapshot stays in service)", registry=r)
        self.data_revision = Gauge("tstore_data_revision", "The data revision of the snapshot in service", registry=r)
        self.prompts = Gauge("tstore_prompts", "Stored prompts with vectors in the snapshot in service", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
