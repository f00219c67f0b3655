"""Each pattern's measured record (:meth:`Store.pattern_tallies_by_service`), kept in step with the
store's writes instead of read again whole.

The record is a count over every action that ever ended, so reading it is one grouped query
over the whole history: with 100,000 actions, 0.34 s on SQLite. The engine used to read it
again after each action that ended, so in a busy year every decision after an action ended
paid for all of it. :class:`PatternTallies` reads it once (and again only when it cannot tell
what a write changed), then adds each action as it ends, from the writes the store tells it of
(:meth:`Store.on_record`). The store is the truth: the cache starts empty in every process and
is read from the store at its first use, so a restart rebuilds it, and it always equals the
grouped query on the same store (tests compare the two after every write).

How a write moves it. The first read also notes every action not yet ended (few: those in
flight). An action heard ending that was one of them, or that was written since in a state
before its end, is added once: a success, or a failure (failed, rolled back, or escalated with
a failed outcome; an escalation is looked up in the store, one indexed read). Anything it cannot
place exactly (an action heard ending that it never saw in flight, written again after it
ended, or a failed outcome for an action already ended), or an escalation's outcome it cannot read
(the store gone for a moment), drops the cache, and the next read
reads the store again: never a wrong number, at worst the old cost once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from autonomic.errors import StoreError
from autonomic.knowledge.store import TALLIED_STATES, Store
from autonomic.model import Action, ActionState, Outcome, VerifyVerdict

Tally = tuple[int, int]  # (successes, failures)
log = logging.getLogger(__name__)


class PatternTallies:
    """Per pattern, (successes, failures) everywhere and per service: see the module docstring.
    Give :meth:`follow` to :meth:`Store.on_record` of the store it reads."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        # None: not read yet, or dropped (the next read reads the store)
        self._totals: dict[str, Tally] | None = None
        self._per_service: dict[str, dict[str, Tally]] = {}
        self._in_flight: set[str] = set()  # actions not yet ended: at the read, or written since
        self.reads = 0  # how many times the whole record was read from the store

    def read(self) -> tuple[Mapping[str, Tally], Mapping[str, Mapping[str, Tally]]]:
        """Per pattern, its record everywhere, and per service acted on, per pattern, its record
        there: as :meth:`Store.pattern_tallies` and :meth:`Store.pattern_tallies_by_service`
        would answer now. Reads the store only the first time and after a drop. The mappings
        returned are not changed afterwards (a later write makes new ones)."""
        with self._lock:
            if self._totals is None:
                with self._store.reading():  # the record and the actions in flight: one snapshot
                    by_service = self._store.pattern_tallies_by_service()
                    in_flight = self._store.unended_actions()
                totals: dict[str, Tally] = {}
                per_service: dict[str, dict[str, Tally]] = {}
                for (pattern, service), (ok, bad) in by_service.items():
                    s, f = totals.get(pattern, (0, 0))
                    totals[pattern] = (s + ok, f + bad)
                    per_service.setdefault(service, {})[pattern] = (ok, bad)
                self._totals, self._per_service, self._in_flight = totals, per_service, set(in_flight)
                self.reads += 1
            return self._totals, self._per_service

    def follow(self, nouns: tuple[Any, ...]) -> None:
        """Move the record by what one committed :meth:`Store.record` wrote (``nouns``). Never
        raises for the store: the write it follows is committed, so a read here that fails (an
        escalation's outcome looked up) drops the record, read again whole at its next use."""
        with self._lock:
            try:
                moved = self._totals is None or self._moved(nouns)
            except StoreError as exc:
                log.warning("pattern tallies: read again at their next use (%s)", exc)
                moved = False
            if not moved:
                self._totals, self._per_service, self._in_flight = None, {}, set()

    def _moved(self, nouns: tuple[Any, ...]) -> bool:
        """Apply ``nouns`` to the cache; False when it cannot tell exactly what they change."""
        written = {n.id for n in nouns if isinstance(n, Action)}
        for noun in nouns:
            if isinstance(noun, Outcome) and noun.verdict == VerifyVerdict.FAIL and noun.action_id not in written \
                    and noun.action_id not in self._in_flight:
                return False  # may turn an escalation already counted into a failure
            if not isinstance(noun, Action):
                continue
            if not noun.state.terminal:
                self._in_flight.add(noun.id)
                continue
            if noun.id not in self._in_flight:
                # never seen in flight: ended before the read, or written again after its end
                if noun.state in TALLIED_STATES:
                    return False
                continue
            self._in_flight.discard(noun.id)
            if noun.state in TALLIED_STATES and noun.pattern_id:
                self._add(noun.pattern_id, noun.service, self._tally(noun, nouns))
        return True

    def _tally(self, action: Action, nouns: tuple[Any, ...]) -> Tally:
        """What one action that just ended adds to its pattern's record."""
        if action.state == ActionState.SUCCEEDED:
            return 1, 0
        if action.state in (ActionState.FAILED, ActionState.ROLLED_BACK):
            return 0, 1
        # escalated: a failure only with a failed outcome (written with it, or before)
        failed = any(isinstance(n, Outcome) and n.action_id == action.id and n.verdict == VerifyVerdict.FAIL
                     for n in nouns) or any(o.verdict == VerifyVerdict.FAIL
                                            for o in self._store.outcomes(action_id=action.id))
        return 0, int(failed)

    def _add(self, pattern: str, service: str, tally: Tally) -> None:
        """Add ``tally`` to ``pattern``'s record, making new mappings (a reader keeps the old ones)."""
        assert self._totals is not None
        ok, bad = tally
        s, f = self._totals.get(pattern, (0, 0))
        self._totals = {**self._totals, pattern: (s + ok, f + bad)}
        here = self._per_service.get(service, {})
        s, f = here.get(pattern, (0, 0))
        self._per_service = {**self._per_service, service: {**here, pattern: (s + ok, f + bad)}}
