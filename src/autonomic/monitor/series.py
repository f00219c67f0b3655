"""The in-memory series store: one pair of numpy arrays per metric family.

A *metric family* is one metric name across every service that reports it. Its samples live
in two preallocated float64 arrays of shape ``(series, capacity)`` (timestamps and values):
row ``j`` is series ``j``'s ring buffer, with its own head and count. Appending writes one
slot and advances that row's head, so an append is O(1) and memory is bounded by
``16 * capacity`` bytes per series; once a row is full its oldest sample is overwritten. A
new series adds a row (the arrays grow by doubling, so adding is amortised O(1) too).

Reads return fresh arrays, oldest first, so callers may keep them without seeing later
writes. :meth:`SeriesStore.aligned` turns the irregular samples of many series into one
value per series for a time step (the mean of each series' samples in ``(since, until]``),
with array operations over the family, not a Python loop per series.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from autonomic.model import Sample

FloatArray = npt.NDArray[np.float64]


class _Family:
    """The rings of every series of one metric, stacked: row ``j`` is one series."""

    __slots__ = ("ts", "values", "_ts", "_values", "cap", "head", "count", "rows", "version", "_lookups")

    def __init__(self, capacity: int) -> None:
        self.cap = capacity
        self.ts: FloatArray = np.empty((0, capacity), dtype=np.float64)
        self.values: FloatArray = np.empty((0, capacity), dtype=np.float64)
        self._ts, self._values = self.ts.ravel(), self.values.ravel()  # flat views, for appends
        self.head: list[int] = []  # per row: the slot the next sample is written to
        self.count: list[int] = []  # per row: samples held
        self.rows: dict[str, int] = {}  # service -> row
        self.version = 0  # bumped when a row is added
        self._lookups: dict[tuple[str, ...], tuple[int, np.ndarray]] = {}

    def row(self, service: str) -> int:
        """The row of ``service``, added when new."""
        j = self.rows.get(service)
        if j is not None:
            return j
        j = len(self.rows)
        if j == self.ts.shape[0]:  # full: double the rows
            self.reserve(j + 1)
        self.head.append(0)
        self.count.append(0)
        self.rows[service] = j
        self.version += 1
        return j

    def reserve(self, rows: int) -> None:
        """Room for at least ``rows`` rows without growing again: the arrays grow to that, or to
        double their rows when that is more (so adding rows one by one is amortised O(1), and a
        batch of many new series grows them once, not once per doubling)."""
        have = self.ts.shape[0]
        if rows <= have:
            return
        size = max(rows, 2 * have, 4)
        cap = self.cap
        ts, values = np.zeros((size, cap)), np.zeros((size, cap))  # untouched pages cost nothing yet
        ts[:have], values[:have] = self.ts, self.values
        self.ts, self.values = ts, values
        self._ts, self._values = ts.ravel(), values.ravel()

    def append(self, service: str, ts: float, value: float) -> None:
        j = self.rows.get(service)
        if j is None:
            j = self.row(service)
        h = self.head[j]
        cap = self.cap
        self._ts[j * cap + h] = ts
        self._values[j * cap + h] = value
        self.head[j] = h + 1 if h + 1 < cap else 0
        if self.count[j] < cap:
            self.count[j] += 1

    def ordered(self, j: int) -> tuple[FloatArray, FloatArray]:
        """Copies of row ``j``'s samples, oldest first."""
        n, h = self.count[j], self.head[j]
        ts, values = self.ts[j], self.values[j]
        if n < self.cap:
            return ts[:n].copy(), values[:n].copy()
        return np.concatenate((ts[h:], ts[:h])), np.concatenate((values[h:], values[:h]))

    def lookup(self, services: tuple[str, ...]) -> np.ndarray:
        """Rows of ``services`` (-1 for a service this family has not seen), cached until a row
        is added."""
        cached = self._lookups.get(services)
        if cached is not None and cached[0] == self.version:
            return cached[1]
        rows = np.array([self.rows.get(s, -1) for s in services], dtype=np.int64)
        if len(self._lookups) > 64:
            self._lookups.clear()
        self._lookups[services] = (self.version, rows)
        return rows


DEFAULT_CAPACITY = 720  # samples kept per series by default: one hour at a 5 s tick


class SeriesStore:
    """Bounded in-memory series, the read side of which is ``protocols.SeriesReader``.

    ``capacity`` is the number of samples kept per (service, metric); at a 5 s tick the
    default 720 keeps one hour. NaN values are dropped on append (a source that could not
    measure says nothing rather than a number).
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._families: dict[str, _Family] = {}

    def append(self, sample: Sample) -> None:
        """Store one sample; NaN values are ignored."""
        value = float(sample.value)
        if math.isnan(value):
            return
        family = self._families.get(sample.metric)
        if family is None:
            family = self._families[sample.metric] = _Family(self.capacity)
        family.append(sample.service, float(sample.ts), value)

    def extend(self, samples: Iterable[Sample]) -> None:
        """Store each sample in turn (as :meth:`append`); the rows of the series new to a family
        are made room for at once first."""
        batch = samples if isinstance(samples, list | tuple) else list(samples)
        families = self._families
        new: dict[str, set[str]] = {}
        for sample in batch:
            family = families.get(sample.metric)
            if (family is None or sample.service not in family.rows) and not math.isnan(sample.value):
                new.setdefault(sample.metric, set()).add(sample.service)
        for metric, services in new.items():
            family = families.get(metric)
            if family is None:
                family = families[metric] = _Family(self.capacity)
            family.reserve(len(family.rows) + len(services))
        for sample in batch:
            self.append(sample)

    def _row(self, service: str, metric: str) -> tuple[_Family, int] | None:
        family = self._families.get(metric)
        if family is None:
            return None
        j = family.rows.get(service)
        if j is None or family.count[j] == 0:
            return None
        return family, j

    def window(self, service: str, metric: str, since: float) -> tuple[FloatArray, FloatArray]:
        """(timestamps, values) with ts >= since, oldest first; empty arrays when unknown."""
        found = self._row(service, metric)
        if found is None:
            return np.empty(0, dtype=np.float64), np.empty(0, dtype=np.float64)
        ts, values = found[0].ordered(found[1])
        keep = ts >= since
        if keep.all():
            return ts, values
        return ts[keep], values[keep]

    def latest(self, service: str, metric: str) -> tuple[float, float] | None:
        """The most recent (ts, value), or None when nothing was stored."""
        found = self._row(service, metric)
        if found is None:
            return None
        family, j = found
        i = (family.head[j] - 1) % family.ts.shape[1]
        return float(family.ts[j, i]), float(family.values[j, i])

    def aligned(self, metric: str, services: tuple[str, ...], since: float, until: float) -> FloatArray:
        """One value per service for the step ``(since, until]``: the mean of that series'
        samples with ``since < ts <= until``; NaN where it has none (or never reported).

        Walks back from each row's newest sample, one slot per iteration for all rows at
        once, until every row has reached a sample at or before ``since`` (so the work is
        the samples per step, whatever the number of series). A sample stored out of time
        order behind an older one is not reached.
        """
        out = np.full(len(services), np.nan)
        family = self._families.get(metric)
        if family is None or not services:
            return out
        rows = family.lookup(services)
        known = rows >= 0
        r = rows[known]
        if r.size == 0:
            return out
        cap = family.ts.shape[1]
        head = np.asarray(family.head, dtype=np.int64)[r]
        count = np.asarray(family.count, dtype=np.int64)[r]
        total = np.zeros(r.size)
        n = np.zeros(r.size)
        for k in range(cap):
            reach = k < count
            slot = (head - 1 - k) % cap
            ts = family.ts[r, slot]
            newer = reach & (ts > since)
            if not newer.any():
                break
            take = newer & (ts <= until)
            total += np.where(take, family.values[r, slot], 0.0)
            n += take
        with np.errstate(invalid="ignore", divide="ignore"):
            out[known] = np.where(n > 0, total / np.maximum(n, 1.0), np.nan)
        return out

    def tails(self, metric: str, services: tuple[str, ...], k: int) -> tuple[FloatArray, FloatArray]:
        """The last ``k`` samples of each service, as two ``(len(services), k)`` arrays
        (timestamps, values), newest in the last column; NaN where a series holds fewer than
        ``k`` samples (all NaN for a service this family has not seen). One gather over the
        family, not a read per series."""
        n = len(services)
        ts_out = np.full((n, max(k, 0)), np.nan)
        values_out = np.full((n, max(k, 0)), np.nan)
        family = self._families.get(metric)
        if family is None or n == 0 or k < 1:
            return ts_out, values_out
        rows = family.lookup(services)
        known = rows >= 0
        r = rows[known]
        if r.size == 0:
            return ts_out, values_out
        back = np.arange(k - 1, -1, -1)  # column c holds the sample (k - 1 - c) before the newest
        head = np.asarray(family.head, dtype=np.int64)[r]
        count = np.asarray(family.count, dtype=np.int64)[r]
        slots = (head[:, None] - 1 - back[None, :]) % family.cap
        held = back[None, :] < count[:, None]
        ts_out[known] = np.where(held, family.ts[r[:, None], slots], np.nan)
        values_out[known] = np.where(held, family.values[r[:, None], slots], np.nan)
        return ts_out, values_out

    def metrics(self, service: str) -> Sequence[str]:
        return sorted(metric for metric, family in self._families.items() if service in family.rows)

    def services(self) -> Sequence[str]:
        return sorted(set().union(*(family.rows for family in self._families.values())))
