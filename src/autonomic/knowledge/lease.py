"""Leader election over the store: several engine replicas share one database, one of them acts.

The lease is one row of the store's named state (``lease:engine``): the holder's identity, an
epoch and a renewal counter. The design is Kubernetes' client-go leader election, with the
store as the lock:

- The leader renews every ``retry_s`` (the counter goes up; no audit event: it is a heartbeat).
  It stops acting once it has gone ``renew_s`` without a successful renewal, measured on its own
  monotonic clock from the moment it *started* the last renewal that succeeded.
- A standby reads the lease every ``retry_s``. It takes the lease over once it has watched the
  record stay exactly the same for ``lease_s`` on *its own* monotonic clock, or at once when the
  lease was released (the leader stopped cleanly) or never taken. No two machines' wall clocks
  are ever compared, so clock skew and NTP steps cannot hand the lease to two replicas.
  ``renew_s < lease_s``: the leader has stopped acting before any standby may take over, with
  ``lease_s - renew_s`` to spare for the two clocks running at slightly different rates.
- The epoch is a fencing token. It goes up by one at every change of holder, and while a
  replica leads its :class:`~autonomic.knowledge.store.Store` checks, at the start of every write
  transaction and under the store's write lock, that the lease still names it with its epoch.
  A leader that was frozen past its lease (a long pause, a stopped VM, a partition) and wakes
  after a takeover gets :class:`~autonomic.errors.NotLeaderError` from its first write, and
  every actuator call is preceded by :meth:`LeaderElector.check` (an action's first attempt by a
  journal write too): it can neither write nor start an actuator call. A call already running when
  the leader was cut off is not fenced: it goes on. So a replica that took the lease without its
  holder giving it up (:attr:`LeaderElector.took_over_from`) leaves the actions left running or
  rolling back alone for ``takeover_grace_s`` (by default each action's longest call less
  ``lease_s - renew_s``) before recovering them (Engine.start).
- A replica that has lost the lease does not try to lead again in the same process: its
  in-memory caches may be stale. It learns it from a renewal that finds the lease taken, or
  from a write of its main loop that the fence refused, whichever comes first (the renewals may
  be held up in a call to the store that does not return). The engine stops and its supervisor (Kubernetes) starts it
  again, as a standby (controller-runtime does the same).

Claims are write transactions, and write transactions are serialised (BEGIN IMMEDIATE on SQLite,
the advisory lock on PostgreSQL), so of two standbys that saw the same expired lease only the
first claim succeeds; the second finds the record changed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autonomic.clock import local_stamp
from autonomic.errors import NotLeaderError, StoreError

if TYPE_CHECKING:
    from autonomic.knowledge.store import Store

log = logging.getLogger("autonomic.lease")

ENGINE_LEASE = "engine"


def lease_key(name: str) -> str:
    """The named-state key a lease is stored under."""
    return f"lease:{name}"


def elapsed_clock() -> float:
    """Seconds on a clock that never goes back and, unlike ``time.monotonic`` on Linux, also runs
    while the machine is suspended (CLOCK_BOOTTIME): a leader whose VM was suspended for longer
    than its lease must not wake believing it renewed a moment ago. ``time.monotonic`` where
    there is no such clock."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(boottime) if boottime is not None else time.monotonic()


def default_identity() -> str:
    """This process, told apart from every other replica: host name, pid and a random suffix
    (a restarted pod can reuse both the name and the pid)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Lease:
    """One lease as stored. ``holder`` is None once released; ``epoch`` counts changes of holder;
    ``renewals`` counts the holder's renewals since it took the lease (what a standby watches)."""

    holder: str | None
    epoch: int
    renewals: int
    # when the holder took the lease and last renewed it, by the store's clock (the database
    # server's on PostgreSQL: one clock for every replica); for people, never for timing
    acquired_at: float
    renewed_at: float
    config: str | None = None  # the holder's Config.fingerprint (None: not given, or an older holder)

    @classmethod
    def from_state(cls, value: dict[str, Any]) -> Lease:
        holder = value.get("holder")
        config = value.get("config")
        return cls(holder=None if holder is None else str(holder), epoch=int(value.get("epoch", 0)),
                   renewals=int(value.get("renewals", 0)), acquired_at=float(value.get("acquired_at", 0.0)),
                   renewed_at=float(value.get("renewed_at", 0.0)), config=None if config is None else str(config))

    def to_state(self) -> dict[str, Any]:
        return {"holder": self.holder, "epoch": self.epoch, "renewals": self.renewals,
                "acquired_at": self.acquired_at, "renewed_at": self.renewed_at, "config": self.config}

    def summary(self, now: float, lease_s: float) -> str:
        """Who leads, since when, and whether the holder renews, for a person (``autonomic status``);
        ``now`` by the store's clock (:meth:`Store.server_time`), ``lease_s`` the config's."""
        since = local_stamp(self.acquired_at)
        if self.holder is None:
            return f"none (released {now - self.renewed_at:.0f} s ago; epoch {self.epoch})"
        age = now - self.renewed_at
        renewed = (f"renewed {age:.0f} s ago" if age <= lease_s else
                   f"NOT RENEWED for {age:.0f} s (lease_s {lease_s:g}): the leader is down, frozen or cut off "
                   "from the store; a standby takes over once it has watched it that long")
        return f"{self.holder} (epoch {self.epoch}), leading since {since}, {renewed}"

    def other_config(self, fingerprint: str | None) -> bool:
        """Whether the holder published a config fingerprint other than ``fingerprint`` (False
        when either is not known)."""
        return self.config is not None and fingerprint is not None and self.config != fingerprint

    def held_by(self, holder: str, epoch: int) -> bool:
        """Whether ``holder`` holds this lease at ``epoch`` (the fence, a renewal, a release)."""
        return self.holder == holder and self.epoch == epoch

    @property
    def version(self) -> tuple[str | None, int, int]:
        """What a standby compares: any renewal or change of holder changes it."""
        return (self.holder, self.epoch, self.renewals)


class LeaderElector:
    """One replica's side of the election: call :meth:`attempt` every ``retry_s``.

    ``monotonic`` is the clock every duration is measured on (:func:`elapsed_clock`; tests hand in
    a fake one)."""

    def __init__(self, store: Store, *, identity: str | None = None, name: str = ENGINE_LEASE,
                 lease_s: float = 15.0, renew_s: float = 10.0,
                 monotonic: Callable[[], float] = elapsed_clock, config: str | None = None) -> None:
        if not 0 < renew_s < lease_s:
            raise ValueError(f"need 0 < renew_s < lease_s, got renew_s={renew_s:g}, lease_s={lease_s:g}")
        self.store = store
        self.identity = identity or default_identity()
        self.name = name
        self.lease_s = lease_s
        self.renew_s = renew_s
        self._monotonic = monotonic
        self._epoch: int | None = None  # the epoch of our lease while we hold it
        self._renewed = -float("inf")  # monotonic time at the start of the last claim or renewal that succeeded
        self._seen: Lease | None = None  # the record as last read
        self._seen_since = 0.0  # monotonic time when the record was first read as it is now
        self.lost = False  # we held the lease and another replica has it now: never lead again here
        # the holder of the lease we took without its giving it up (it died, froze, lost the
        # store): its actuator calls may still be in flight (see Engine.start); None otherwise
        self.took_over_from: str | None = None
        self._store_problem: str | None = None  # the store error last logged (see attempt)
        # this replica's Config.fingerprint, written into the lease while it holds it; a standby
        # warns (once per leader and config) when the leader's differs: see _compare_config
        self.config = config
        self._config_warned: tuple[str | None, str | None] | None = None

    # --- state ---------------------------------------------------------------------------------

    @property
    def leading(self) -> bool:
        """Whether this replica may act now: it holds the lease and renewed it less than ``renew_s`` ago."""
        return self._epoch is not None and self._monotonic() - self._renewed < self.renew_s

    @property
    def seen(self) -> Lease | None:
        """The lease as this replica last read or wrote it."""
        return self._seen

    @property
    def config_differs(self) -> bool:
        """Whether the replica that holds the lease, as last read, runs a config other than this
        one's (by fingerprint; False when either is not known)."""
        seen = self._seen
        return seen is not None and seen.holder not in (None, self.identity) and seen.other_config(self.config)

    def describe(self) -> str:
        """Who leads, as far as this replica knows: for logs, /readyz and API refusals."""
        if self.leading:
            return f"this replica ({self.identity}) leads, epoch {self._epoch}"
        if self.lost:
            return f"this replica ({self.identity}) lost the lease" + (
                f" to {self._seen.holder} (epoch {self._seen.epoch})" if self._seen and self._seen.holder else "")
        if self._epoch is not None:
            return f"this replica ({self.identity}) holds the lease but has not renewed it for {self.renew_s:g} s"
        if self._seen is None or self._seen.holder is None:
            return "no replica leads yet"
        differs = (f"; it runs another config ({self._seen.config}; this replica's: {self.config})"
                   if self.config_differs else "")
        return f"standby; the leader is {self._seen.holder} (epoch {self._seen.epoch}){differs}"

    def check(self) -> None:
        """Raise NotLeaderError unless :attr:`leading`: asked before every actuator call."""
        if not self.leading:
            raise NotLeaderError(f"not acting: {self.describe()}")

    # --- one round ------------------------------------------------------------------------------

    def attempt(self) -> bool:
        """One round: renew the lease when holding it, else take it when it is free or has gone
        unrenewed for ``lease_s``. Returns :attr:`leading`. A store that does not answer is
        logged and counts as a failed round (a leader then stops acting after ``renew_s``)."""
        if self.lost:
            return False
        started = self._monotonic()
        try:
            if self._epoch is not None:
                self._renew(started)
            else:
                self._try_take(started)
        except NotLeaderError:  # our store's fence refused the renewal: someone else holds it
            with contextlib.suppress(StoreError):
                self._observe(self.store.lease(self.name), started)
            self._lose()
        except StoreError as exc:
            if str(exc) != self._store_problem:  # once per problem, not every retry_s
                log.warning("lease %s: the store did not answer (%s); %s", self.name, exc, self.describe())
            self._store_problem = str(exc)
        else:
            if self._store_problem is not None:
                log.info("lease %s: the store answers again; %s", self.name, self.describe())
            self._store_problem = None
        return self.leading

    def notice_fence(self) -> bool:
        """Whether the lease is lost, counting what the store's fence found: a write of this
        replica's refused because the lease is no longer its own (:attr:`Store.fenced_out`) is
        as sure a sign as a renewal that finds it taken. The engine loop asks after every tick, so
        a deposed leader stops even while its renewals are held up (a lease thread stuck in a call
        to the store that never returns would otherwise leave it running, unable to act or write,
        for good)."""
        refused = self.store.fenced_out
        if refused is not None and self._epoch is not None and not refused.held_by(self.identity, self._epoch):
            self._observe(refused, self._monotonic())
            self._lose()
        return self.lost

    def _renew(self, started: float) -> None:
        assert self._epoch is not None
        lease = self.store.claim_lease(self.name, self.identity, renew_epoch=self._epoch)
        self._observe(lease, started)
        if lease.held_by(self.identity, self._epoch):
            self._renewed = started
        else:
            self._lose()

    def _try_take(self, started: float) -> None:
        lease = self.store.lease(self.name)
        # A record is first seen when the read returns, not when it was asked for: a read that
        # stalled may bring back a renewal the leader made long after ``started`` (client-go
        # likewise stamps its observation after the Get), and the wait must count from then.
        read = self._monotonic()
        self._observe(lease, read)
        free = lease is None or lease.holder is None
        if not free and read - self._seen_since < self.lease_s:
            return
        taken = self.store.claim_lease(self.name, self.identity, take=None if lease is None else lease.version,
                                       config=self.config)
        self._observe(taken, self._monotonic())
        if taken.holder == self.identity:
            self._epoch, self._renewed = taken.epoch, started
            self.store.fence(self.name, self.identity, taken.epoch)
            previous = "none" if lease is None or lease.holder is None else lease.holder
            # held under any identity, ours included (a given ``identity``: the process a restart
            # replaced, or a second replica given the same one), by a process that is not this one
            # (it never held it: _epoch was None) and did not give it up: its calls may be in flight
            if lease is not None and lease.holder is not None:
                self.took_over_from = lease.holder
            log.warning("lease %s: this replica (%s) now leads, epoch %d (previous holder: %s)%s",
                        self.name, self.identity, taken.epoch, previous,
                        f"; it ran another config ({lease.config}), this replica acts by its own ({self.config})"
                        if lease is not None and lease.other_config(self.config) else "")

    def _observe(self, lease: Lease | None, now: float) -> None:
        if lease is None or self._seen is None or lease.version != self._seen.version:
            self._seen_since = now
        self._seen = lease
        if self.config_differs and lease is not None and self._config_warned != (lease.holder, lease.config):
            self._config_warned = (lease.holder, lease.config)
            log.warning("lease %s: the leader %s runs another config (fingerprint %s; this replica's: %s): if "
                        "this replica takes over, it acts by its own (its services, policy and patterns); "
                        "start every replica with the same config", self.name, lease.holder, lease.config,
                        self.config)

    def _lose(self) -> None:
        if not self.lost:
            self.lost = True
            self._epoch = None
            log.error("lease %s: %s; this replica stops acting", self.name, self.describe())

    def release(self) -> None:
        """Give the lease up (a clean stop), so a standby takes over at its next round instead
        of after ``lease_s``. Does nothing unless this replica holds it; a store error is logged."""
        if self._epoch is None:
            return
        epoch, self._epoch = self._epoch, None
        try:
            self.store.release_lease(self.name, self.identity, epoch)
        except StoreError as exc:
            log.warning("lease %s: not released (%s); a standby takes over in %g s", self.name, exc, self.lease_s)
