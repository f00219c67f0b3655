"""Monitor: sources that produce samples, and the in-memory series store."""

from autonomic.monitor.host import HOST_SERVICE, HostSource, ProcessSource
from autonomic.monitor.probe import HttpProbe, HttpProbeSpec
from autonomic.monitor.prometheus import PrometheusScrape, PrometheusSpec
from autonomic.monitor.series import SeriesStore

__all__ = [
    "HOST_SERVICE",
    "HostSource",
    "HttpProbe",
    "HttpProbeSpec",
    "ProcessSource",
    "PrometheusScrape",
    "PrometheusSpec",
    "SeriesStore",
]
