"""Prometheus metrics: engine state (read at scrape time) plus the server's own counters.

Each app has its own CollectorRegistry, so several apps can live in one process (tests, benchmarks).
"""

from __future__ import annotations

import threading
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from genserve.engine.api import EngineStats

STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ADMISSION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class _EngineCollector:
    def __init__(self, read: Callable[[], EngineStats], job_counts: Callable[[], dict]) -> None:
        self._read = read
        self._job_counts = job_counts

    def collect(self):
        s = self._read()
        req = CounterMetricFamily("genserve_requests", "Engine requests finished, by modality and status",
                                  labels=["modality", "status"])
        for modality, by_status in sorted(s.finished.items()):
            for status, n in sorted(by_status.items()):
                req.add_metric([modality, status], n)
        yield req
        met = CounterMetricFamily("genserve_slo_met", "Requests done within their deadline", labels=["modality"])
        sar = GaugeMetricFamily("genserve_slo_attainment",
                                "Share of finished requests (done or failed) that met their deadline",
                                labels=["modality"])
        for modality in sorted(set(s.finished) | set(s.slo_met)):
            m = s.slo_met.get(modality, 0)
            met.add_metric([modality], m)
            by = s.finished.get(modality, {})
            denom = by.get("done", 0) + by.get("failed", 0)
            sar.add_metric([modality], m / denom if denom else 0.0)
        yield met
        yield sar
        q = GaugeMetricFamily("genserve_queue_length", "Requests queued now", labels=["modality"])
        for modality, n in sorted(s.queued.items()):
            q.add_metric([modality], n)
        yield q
        r = GaugeMetricFamily("genserve_running", "Requests running now", labels=["modality"])
        for modality, n in sorted(s.running.items()):
            r.add_metric([modality], n)
        yield r
        busy = GaugeMetricFamily("genserve_gpu_busy_share", "Share of time each GPU was busy since start",
                                 labels=["gpu"])
        for g, share in enumerate(s.gpu_busy_share):
            busy.add_metric([str(g)], share)
        yield busy
        yield CounterMetricFamily("genserve_preemptions", "Video pauses (preemptions)", value=s.preemptions)
        yield CounterMetricFamily("genserve_sp_changes", "Sequence-parallel degree changes", value=s.sp_changes)
        corr = GaugeMetricFamily("genserve_profile_correction", "Online correction factor (measured / profiled "
                                 "latency, EWMA) per step or batch shape", labels=["key"])
        for key, f in sorted(s.profile_correction.items()):
            corr.add_metric([key], f)
        yield corr
        jobs = GaugeMetricFamily("genserve_jobs", "Jobs in the durable store, by kind and status",
                                 labels=["kind", "status"])
        for (kind, status), n in sorted(self._job_counts().items()):
            jobs.add_metric([kind, status], n)
        yield jobs


class Metrics:
    def __init__(self, read_stats: Callable[[], EngineStats], job_counts: Callable[[], dict]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._read_stats = read_stats
        self._lock = threading.Lock()
        self._cached: EngineStats | None = None
        self.step_seconds = Histogram("genserve_step_seconds", "Measured video denoising step time",
                                      buckets=STEP_BUCKETS, registry=self.registry)
        self.admission_seconds = Histogram(
            "genserve_admission_seconds", "Server time from HTTP request in to engine admission",
            buckets=ADMISSION_BUCKETS, registry=self.registry)
        self.api_requests = Counter("genserve_api_requests", "HTTP API requests by endpoint and status code",
                                    ["endpoint", "code"], registry=self.registry)
        self.rejected = Counter("genserve_overload_rejections", "Requests refused because the engine was full",
                                registry=self.registry)
        self.registry.register(_EngineCollector(self._stats, job_counts))

    def _stats(self) -> EngineStats:
        return self._cached if self._cached is not None else EngineStats()

    def render(self) -> bytes:
        """Read the engine's stats once (draining its step times into the histogram), then render."""
        with self._lock:
            s = self._read_stats()
            for v in s.step_seconds:
                self.step_seconds.observe(v)
            self._cached = s
            return generate_latest(self.registry)
