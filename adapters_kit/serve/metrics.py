"""The server's Prometheus metrics (``GET /metrics``), in a registry of its own per app."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """Requests by adapter and status, latency, batch sizes, queue depth and loaded adapters."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("adapters_kit_requests", "Prediction requests by adapter and HTTP status",
                                ["adapter", "status"], registry=self.registry)
        self.latency = Histogram("adapters_kit_request_seconds", "Prediction request latency (seconds)",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("adapters_kit_batch_size", "Inputs per model batch",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("adapters_kit_queue_depth", "Requests waiting for a batch", registry=self.registry)
        self.adapters = Gauge("adapters_kit_adapters_loaded", "Adapters loaded", registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
