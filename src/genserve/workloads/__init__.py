"""Workloads: arrival processes, request mixes, resolution distributions, and JSONL traces."""

from genserve.workloads.arrivals import ARRIVALS, arrival_times
from genserve.workloads.generate import WorkloadSpec, generate_trace, parse_mix
from genserve.workloads.trace import TraceRecord, read_trace, to_requests, write_trace

__all__ = [
    "ARRIVALS", "TraceRecord", "WorkloadSpec", "arrival_times", "generate_trace", "parse_mix", "read_trace",
    "to_requests", "write_trace",
]
