"""Map a metric name to the cause that groups its findings into incidents.

The vocabulary is the one in :mod:`autonomic.model`'s docstring: one open incident per
(service, cause).
"""

from __future__ import annotations

_CAUSES = {
    "up": "down",
    "probe_ok": "down",
    "rss_bytes": "memory",
    "memory_percent": "memory",
    "cpu_percent": "cpu",
    "disk_percent": "disk",
    "error_rate": "errors",
    "latency_ms": "latency",
    "probe_latency_ms": "latency",
    "availability": "availability",
    "open_fds": "fds",
}


def cause_of(metric: str) -> str:
    """The cause for ``metric``: ``down``, ``memory``, ``cpu``, ``disk``, ``pool`` (any
    ``pool_*``), ``errors``, ``latency``, ``availability``, ``fds``, else ``metric:<name>``."""
    cause = _CAUSES.get(metric)
    if cause is not None:
        return cause
    if metric.startswith("pool_"):
        return "pool"
    return f"metric:{metric}"
