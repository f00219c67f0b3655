"""Sources that read the local machine through psutil: the host itself and supervised processes.

Neither raises for a bad target: a process that vanished reads as ``up=0`` for its service; a
live one we may not inspect in full (another user's: a setuid command, one adopted from a
pidfile) is up, with the readings we may take.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

import psutil

from autonomic.model import Sample
from autonomic.protocols import Clock

HOST_SERVICE = "host"


class HostSource:
    """Samples the pseudo-service ``host``: cpu_percent, memory_percent, disk_percent, load1.

    ``cpu_percent`` is the system-wide share since the previous call
    (``psutil.cpu_percent(interval=None)``, primed here so the first collect is meaningful);
    ``disk_percent`` is the usage of ``disk_path`` (default ``/``).
    """

    name = "host"

    def __init__(self, clock: Clock | None = None, disk_path: str = "/") -> None:
        self.clock = clock
        self.disk_path = disk_path
        psutil.cpu_percent(interval=None)

    def collect(self, now: float) -> Sequence[Sample]:
        readings = {
            "cpu_percent": psutil.cpu_percent(interval=None),
            "memory_percent": psutil.virtual_memory().percent,
            "disk_percent": psutil.disk_usage(self.disk_path).percent,
            "load1": psutil.getloadavg()[0],
        }
        return [Sample(HOST_SERVICE, metric, now, float(v)) for metric, v in readings.items()]


class ProcessSource:
    """Samples each supervised service's process.

    ``pids()`` maps service name to its current pid (None when not running). For every
    service it yields ``up`` (1 when the pid is alive and not a zombie, else 0); for a live
    process also ``cpu_percent`` (percent of one core since the previous collect; the first
    reading of a new pid may be 0), ``rss_bytes``, ``memory_percent`` (rss as percent of
    ``memory_limits[service]``, or of host memory when unset), ``open_fds`` and ``threads``.

    ``psutil.Process`` objects are cached per pid so cpu deltas work across collects;
    ``is_running`` also guards against a recycled pid. A reading the process does not let us take
    (another user's process: its open fds) is left out; the process is still up.

    With ``stopped`` (the services a person stopped on purpose, ``autonomic stop``), every
    service also gets ``unit_stopped``, as a systemd unit's source samples it: 1 for one stopped
    on purpose and not running, which then gets no ``up`` (it is not down: a person stopped it),
    else 0, so that a start is seen at the next collection.
    """

    name = "process"

    def __init__(
        self,
        pids: Callable[[], Mapping[str, int | None]],
        memory_limits: Mapping[str, int | None] | None = None,
        stopped: Callable[[], Collection[str]] | None = None,
    ) -> None:
        self._pids = pids
        self._stopped = stopped
        self._limits = dict(memory_limits or {})
        self._procs: dict[int, psutil.Process] = {}

    def collect(self, now: float) -> Sequence[Sample]:
        current = dict(self._pids())
        live_pids = {pid for pid in current.values() if pid is not None}
        for stale in set(self._procs) - live_pids:
            del self._procs[stale]
        host_total: int | None = None
        samples: list[Sample] = []
        stopped = None if self._stopped is None else self._stopped()
        for service, pid in current.items():
            readings = self._read(pid) if pid is not None else None
            if stopped is not None:
                on_purpose = readings is None and service in stopped
                samples.append(Sample(service, "unit_stopped", now, 1.0 if on_purpose else 0.0))
                if on_purpose:
                    continue
            if readings is None:
                samples.append(Sample(service, "up", now, 0.0))
                continue
            rss = readings.get("rss_bytes")
            limit = self._limits.get(service)
            if not limit:
                if host_total is None:
                    host_total = psutil.virtual_memory().total
                limit = host_total
            if rss is not None:
                readings["memory_percent"] = rss / limit * 100.0
            samples.append(Sample(service, "up", now, 1.0))
            samples.extend(Sample(service, metric, now, value) for metric, value in readings.items())
        return samples

    def _read(self, pid: int) -> dict[str, float] | None:
        """The process's readings, or None when it is gone or a zombie. A reading we may not take
        (``AccessDenied``: another user's process) is left out: alive is up, not down."""
        try:
            proc = self._procs.get(pid)
            if proc is None or not proc.is_running():
                proc = psutil.Process(pid)
                self._procs[pid] = proc
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    return None
                reads: dict[str, Callable[[], float]] = {
                    "cpu_percent": lambda: proc.cpu_percent(interval=None),
                    "rss_bytes": lambda: proc.memory_info().rss,
                    "threads": proc.num_threads,
                }
                if hasattr(proc, "num_fds"):
                    reads["open_fds"] = proc.num_fds
                readings: dict[str, float] = {}
                for metric, read in reads.items():
                    try:
                        readings[metric] = float(read())
                    except psutil.AccessDenied:
                        continue
            return readings
        except psutil.AccessDenied:  # not even its state: is it there at all (no permission needed)?
            return {} if psutil.pid_exists(pid) else None
        except psutil.NoSuchProcess:  # ZombieProcess is a NoSuchProcess
            self._procs.pop(pid, None)
            return None
