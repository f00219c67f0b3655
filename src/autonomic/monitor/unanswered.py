"""Servers that gave no answer to the last requests of a collection: the rest of it does not ask
them.

A collection asks each source's server one request after another within a lane (see
``Engine._collect_lanes``), each bounded by its own timeout. A server that hangs (a Prometheus
under a query of death, a Docker engine stuck on its storage driver, a D-Bus that does not
answer) then held the loop for the sum of its requests' timeouts at every collection (ten
queries of 5 s: 50 s). :class:`Unanswered` is shared by the sources of one kind: once
:data:`UNANSWERED_IN_A_ROW` requests in a row to one server at one collection (its ``now``) went
unanswered, the requests to it still to make in that collection are not made (each source raises
SourceError saying so). Any answer, an error answer too, ends the run, so one request slow on
its own does not keep the others from being made. The next collection asks again.
"""

from __future__ import annotations

import threading

UNANSWERED_IN_A_ROW = 2  # requests to one server that gave no answer, in a row: the rest of a collection skips it


class Unanswered:
    """The servers (each by a name: a URL, a Docker engine's address, a D-Bus) that let
    :data:`UNANSWERED_IN_A_ROW` requests in a row of one collection go without an answer.
    ``requests`` names what is asked in the refusal ("queries", "reads") and ``unanswered`` what
    counts as no answer ("each within its timeout_s"). Safe to share between lanes' threads."""

    def __init__(self, requests: str = "queries", unanswered: str = "each within its timeout_s") -> None:
        self.requests = requests
        self.unanswered = unanswered
        self._runs: dict[str, tuple[float, int]] = {}  # server -> (the collection's now, unanswered in a row)
        self._lock = threading.Lock()

    def refusal(self, server: str, now: float) -> str | None:
        """Why a request to ``server`` at ``now`` is not made, or None when it is."""
        with self._lock:
            run = self._runs.get(server)
        if run is None or run[0] != now or run[1] < UNANSWERED_IN_A_ROW:
            return None
        return (f"not asked: {server} gave no complete answer to {UNANSWERED_IN_A_ROW} {self.requests} in a row "
                f"in this collection ({self.unanswered}); asked again at the next")

    def record(self, server: str, now: float, answered: bool) -> None:
        """A request to ``server`` at ``now`` was answered (any answer, an error one too) or not."""
        with self._lock:
            if answered:
                self._runs.pop(server, None)
                return
            run = self._runs.get(server)
            self._runs[server] = (now, run[1] + 1 if run is not None and run[0] == now else 1)
