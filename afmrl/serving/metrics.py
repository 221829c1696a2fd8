"""Prometheus metrics of one service instance (its own registry, so several apps in one process, as in
tests, do not collide): requests by route and status, latency, the encode / search split, swaps."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("afmrl_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=self.registry)  # fmt: skip
        self.latency = Histogram("afmrl_request_seconds", "request latency by route", ["route"], buckets=BUCKETS,
                                 registry=self.registry)  # fmt: skip
        self.encode = Histogram("afmrl_encode_seconds", "query encoding time", ["kind"], buckets=BUCKETS,
                                registry=self.registry)  # fmt: skip
        self.search = Histogram("afmrl_search_seconds", "Milvus search time", buckets=BUCKETS, registry=self.registry)
        self.swaps = Gauge("afmrl_swaps", "encoder/collection swaps since start", registry=self.registry)
        self.version = Gauge("afmrl_served_version", "registry version served (0: not from the registry)",
                             registry=self.registry)  # fmt: skip
