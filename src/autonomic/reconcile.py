"""The keyed work queue (controller-runtime style).

Work items are ids, not events: ``("incident", id)`` or ``("action", id)``. A reconcile step
re-reads the store, advances the item by one step, persists, and returns when to look
again (or None when the item needs nothing more). Restart recovery is just enqueueing every
non-terminal id. Adding a key that is already queued keeps the earlier due time.
"""

from __future__ import annotations

import heapq
import itertools

Key = tuple[str, str]


class WorkQueue:
    """A de-duplicating delay queue of keys."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Key]] = []
        self._due: dict[Key, float] = {}
        self._seq = itertools.count()

    def add(self, key: Key, due: float) -> None:
        """Look at ``key`` at ``due`` (or earlier, if it is already queued for earlier)."""
        current = self._due.get(key)
        if current is not None and current <= due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._seq), key))
        if current is not None:  # the entry it was queued with is superseded
            self._compact()

    def discard(self, key: Key) -> None:
        """Forget ``key`` if it is queued (its item needs nothing more: an incident closed)."""
        if self._due.pop(key, None) is not None:
            self._compact()

    def _compact(self) -> None:
        """Drop the superseded entries (a key discarded, or queued again earlier) once they are
        most of the heap: otherwise each would stay until its own due time came, which may be an
        hour away (an approval's expiry), so memory would follow the keys queued in the last
        hour rather than the keys queued now."""
        if len(self._heap) > 2 * len(self._due) + 64:
            self._heap = [entry for entry in self._heap if self._due.get(entry[2]) == entry[0]]
            heapq.heapify(self._heap)

    def pop_due(self, now: float) -> list[Key]:
        """Every key whose due time has come, earliest first, each once."""
        out: list[Key] = []
        while self._heap and self._heap[0][0] <= now:
            due, _, key = heapq.heappop(self._heap)
            if self._due.get(key) == due:
                del self._due[key]
                out.append(key)
        return out

    def due_by(self, now: float) -> None:
        """Every queued key due at ``now`` at the latest (for when the clock went back, so that
        due times taken from the later clock would otherwise put the work off by the step)."""
        for key in list(self._due):
            self.add(key, now)

    def next_due(self) -> float | None:
        while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def __contains__(self, key: Key) -> bool:
        return key in self._due

    def __len__(self) -> int:
        return len(self._due)
