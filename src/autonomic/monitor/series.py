"""The in-memory series store: one bounded ring buffer per (service, metric).

Each buffer holds two preallocated numpy float64 arrays (timestamps and values) of a fixed
capacity. Appending writes one slot and advances the head, so memory stays bounded and an
append is O(1); once full, the oldest sample is overwritten. Reads return fresh arrays,
oldest first, so callers may keep them without seeing later writes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from autonomic.model import Sample

FloatArray = npt.NDArray[np.float64]


class _Ring:
    """A fixed-capacity ring of (ts, value) pairs."""

    __slots__ = ("ts", "values", "head", "count")

    def __init__(self, capacity: int) -> None:
        self.ts: FloatArray = np.empty(capacity, dtype=np.float64)
        self.values: FloatArray = np.empty(capacity, dtype=np.float64)
        self.head = 0  # index the next sample is written to
        self.count = 0

    def append(self, ts: float, value: float) -> None:
        self.ts[self.head] = ts
        self.values[self.head] = value
        self.head = (self.head + 1) % self.ts.shape[0]
        if self.count < self.ts.shape[0]:
            self.count += 1

    def ordered(self) -> tuple[FloatArray, FloatArray]:
        """Copies of the stored samples, oldest first."""
        cap = self.ts.shape[0]
        if self.count < cap:
            return self.ts[: self.count].copy(), self.values[: self.count].copy()
        order = np.r_[self.head : cap, 0 : self.head]
        return self.ts[order], self.values[order]

    def last(self) -> tuple[float, float]:
        i = (self.head - 1) % self.ts.shape[0]
        return float(self.ts[i]), float(self.values[i])


class SeriesStore:
    """Bounded in-memory series, the read side of which is ``protocols.SeriesReader``.

    ``capacity`` is the number of samples kept per (service, metric); at a 5 s tick the
    default 720 keeps one hour. NaN values are dropped on append (a source that could not
    measure says nothing rather than a number).
    """

    def __init__(self, capacity: int = 720) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._rings: dict[str, dict[str, _Ring]] = {}

    def append(self, sample: Sample) -> None:
        """Store one sample; NaN values are ignored."""
        value = float(sample.value)
        if math.isnan(value):
            return
        metrics = self._rings.setdefault(sample.service, {})
        ring = metrics.get(sample.metric)
        if ring is None:
            ring = metrics[sample.metric] = _Ring(self.capacity)
        ring.append(float(sample.ts), value)

    def extend(self, samples: Iterable[Sample]) -> None:
        for sample in samples:
            self.append(sample)

    def window(self, service: str, metric: str, since: float) -> tuple[FloatArray, FloatArray]:
        """(timestamps, values) with ts >= since, oldest first; empty arrays when unknown."""
        ring = self._rings.get(service, {}).get(metric)
        if ring is None or ring.count == 0:
            return np.empty(0, dtype=np.float64), np.empty(0, dtype=np.float64)
        ts, values = ring.ordered()
        keep = ts >= since
        if keep.all():
            return ts, values
        return ts[keep], values[keep]

    def latest(self, service: str, metric: str) -> tuple[float, float] | None:
        """The most recent (ts, value), or None when nothing was stored."""
        ring = self._rings.get(service, {}).get(metric)
        if ring is None or ring.count == 0:
            return None
        return ring.last()

    def metrics(self, service: str) -> Sequence[str]:
        return sorted(self._rings.get(service, {}))

    def services(self) -> Sequence[str]:
        return sorted(self._rings)
