"""The state of a service's unit, as the service manager that runs it says: systemd, Docker or
Kubernetes.

A service bound to one of those actuators and to no ``process`` (whose supervisor samples ``up``
itself) gets one :class:`UnitStateSource`, ``unit:<service>``, built by the engine from the binding:
nothing to configure. Each collection asks the actuator to read the unit (its read-only
``unit_state``, each request given at most ``UNIT_READ_TIMEOUT_S``) and maps what it read to samples
here, purely:

- ``up``: 1 while the unit runs or is being (re)started, 0 once it is dead. A unit stopped on
  purpose (a systemd unit ``inactive``, a paused container, a workload scaled to zero replicas)
  yields no ``up`` at all: it is not down.
- ``unit_stopped``: 1 for a unit stopped on purpose, 0 for any other state read: while it is 1
  the engine passes over every remedy through that unit's actuator (a failing probe does not get
  a unit a person stopped started again; see ``Engine._cannot_run``).
- ``available_ratio`` (Kubernetes): available replicas over desired ones, at most 1; a partly
  available workload is not down, but this says how much of it serves.
- ``rollout_complete`` (Kubernetes): 1 once the workload's latest spec is rolled out (what
  ``kubectl rollout status`` waits for), else 0; a rollout restart is verified by it.

A unit that cannot be read (the bus or the engine unreachable, an API error, a timeout) yields no
sample (unknown is not down): the source raises SourceError naming the service, which the engine
logs once until it recovers, and the loop goes on.

Each source has a ``lane``, the manager it asks (a D-Bus, a Docker engine's address, an API
server): the engine collects one manager's units one after another, the managers' lanes beside
the other sources' (``engine.collect_workers``). The sources of an engine share an
:class:`~autonomic.monitor.unanswered.Unanswered`: once two reads in a row of one collection found
a manager unreachable or not answering (a ``RetryableActuatorError``), its other units are not
read in that collection (each says so). A Docker engine that hangs used to hold every collection
for one read's limit per container bound to it, one after another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from autonomic.errors import AutonomicError, RetryableActuatorError, SourceError
from autonomic.model import UNIT_METRICS, Sample
from autonomic.monitor.unanswered import Unanswered

_STOPPED = {"unit_stopped": 1.0}



def unit_kind(bound: Iterable[str]) -> str | None:
    """Which of a service's actuator types (``bound``, in the order its config binds them) its
    unit's state is read through: the first of systemd, docker and kubernetes. None when it binds
    none of them, or binds ``process`` too: autonomic's supervisor samples that one's ``up`` from the
    process it runs, and a second ``up`` series of the same service could say otherwise at the same
    moment (the unit active, the supervised process dead)."""
    kinds = list(bound)
    if "process" in kinds:
        return None
    return next((k for k in kinds if k in UNIT_METRICS), None)


# systemd's ActiveState: running, or on its way to running (a restart's start part, a reload)
_SYSTEMD_UP = ("active", "reloading", "activating", "deactivating")


def systemd_readings(active_state: str, sub_state: str) -> dict[str, float]:
    """``up`` and ``unit_stopped`` of a systemd unit from its ``ActiveState`` and ``SubState``.

    1 when ``active``, ``reloading``, ``activating`` (starting: a restart in progress is not
    down) or ``deactivating`` (the stop part of a restart; after a stop it soon reads inactive);
    0 when ``failed``, and when ``activating`` in SubState ``auto-restart`` (its main process
    died and systemd waits ``RestartSec=`` to start it again: dead until then; one such sample
    between two running ones does not reach ``down_after``). ``inactive``: stopped on purpose (a
    person's ``systemctl stop``, or never started): no ``up``, ``unit_stopped`` 1. Any other state
    (``maintenance``, a newer systemd's): nothing, it cannot tell."""
    if active_state == "failed" or (active_state == "activating" and sub_state == "auto-restart"):
        return {"up": 0.0, "unit_stopped": 0.0}
    if active_state in _SYSTEMD_UP:
        return {"up": 1.0, "unit_stopped": 0.0}
    return dict(_STOPPED) if active_state == "inactive" else {}


def docker_readings(state: Mapping[str, Any]) -> dict[str, float]:
    """``up`` and ``unit_stopped`` of a container from its inspected ``State``.

    1 while ``Running`` and not ``Paused``; 0 once it is not running (``Status`` exited, dead,
    created, removing) or ``Restarting`` (it exited and its restart policy is starting it again,
    with a growing back-off in a crash loop: dead until then). Paused (``docker pause``) or
    exited with ``stopped_by_request`` (the actuator found the engine's ``stop`` event of it since
    it last started: ``docker stop``), both on purpose: no ``up``, ``unit_stopped`` 1."""
    if state.get("Paused") or (state.get("stopped_by_request") and not state.get("Running")):
        return dict(_STOPPED)
    if state.get("Restarting"):
        return {"up": 0.0, "unit_stopped": 0.0}
    return {"up": 1.0 if state.get("Running") else 0.0, "unit_stopped": 0.0}


def kubernetes_readings(status: Mapping[str, Any]) -> dict[str, float]:
    """``up``, ``unit_stopped``, ``available_ratio`` and ``rollout_complete`` of a Deployment or StatefulSet from
    what the actuator's ``unit_state`` read: ``desired`` (spec.replicas), ``replicas``,
    ``updated``, ``available`` (status.*Replicas, absent as 0), ``generation`` and
    ``observed_generation``.

    ``desired`` 0 (scaled to zero: on purpose): only ``unit_stopped`` 1. Else ``up`` is 1 while at
    least one replica is available, 0 when none is; ``available_ratio`` is available over desired (at most 1: a
    surge may run more); ``rollout_complete`` is 1 when the controller has seen the latest spec
    (observedGeneration >= generation) and every desired replica is updated and available with no
    old one left, as ``kubectl rollout status`` judges it."""
    desired = int(status.get("desired") or 0)
    if desired <= 0:
        return dict(_STOPPED)
    available = int(status.get("available") or 0)
    updated = int(status.get("updated") or 0)
    replicas = int(status.get("replicas") or 0)
    generation, observed = status.get("generation"), status.get("observed_generation")
    seen = generation is None or (observed is not None and int(observed) >= int(generation))
    complete = seen and updated >= desired and available >= desired and replicas <= updated
    return {"up": 1.0 if available > 0 else 0.0, "unit_stopped": 0.0,
            "available_ratio": min(1.0, available / desired), "rollout_complete": 1.0 if complete else 0.0}


_READINGS: dict[str, Callable[[Mapping[str, Any]], dict[str, float]]] = {
    "systemd": lambda s: systemd_readings(str(s.get("active_state")), str(s.get("sub_state"))),
    "docker": docker_readings,
    "kubernetes": kubernetes_readings,
}


def readings(kind: str, state: Mapping[str, Any]) -> dict[str, float]:
    """The samples' values for a unit of actuator type ``kind`` in ``state`` (what its
    ``unit_state`` read)."""
    return _READINGS[kind](state)


class UnitStateSource:
    """Source ``unit:<service>``: the state of the service's unit, read through its ``kind``
    actuator's ``unit_state`` (``read``, a call of it with the service's binding), mapped by
    :func:`readings`. Raises SourceError naming the service when the unit cannot be read (no
    sample: unknown is not down). ``lane`` names the manager read (see the module docstring);
    ``unanswered``, shared by the sources of one engine, skips a manager that did not answer."""

    def __init__(self, service: str, kind: str, read: Callable[[], Mapping[str, Any]], limit_s: float,
                 leave_out: Iterable[str] = (), *, lane: str | None = None,
                 unanswered: Unanswered | None = None) -> None:
        if kind not in _READINGS:
            raise ValueError(f"no unit state mapping for actuator type {kind!r}")
        self.service = service
        self.kind = kind
        self.name = f"unit:{service}"
        self.limit_s = limit_s  # the longest one collection can take (the engine's stuck_after_s counts it)
        # metrics another source of the service samples by the config's own say (a scrape renamed
        # to up): not sampled here too, which would interleave two series that may disagree
        self.leave_out = frozenset(leave_out)
        self.lane = lane if lane is not None else kind
        self._unanswered = unanswered
        self._read = read

    def collect(self, now: float) -> Sequence[Sample]:
        unanswered = self._unanswered
        refusal = None if unanswered is None else unanswered.refusal(self.lane, now)
        try:
            if refusal is not None:
                raise SourceError(refusal)
            answered = True  # an answer, an error one too (no such container)
            try:
                state = self._read()
            except RetryableActuatorError:  # unreachable, or no answer in time
                answered = False
                raise
            finally:
                if unanswered is not None:
                    unanswered.record(self.lane, now, answered=answered)
        except AutonomicError as exc:
            raise SourceError(f"service {self.service}: cannot read its {self.kind} unit's state "
                              f"(no up sampled: unknown, not down): {exc}") from exc
        return [Sample(self.service, metric, now, value) for metric, value in readings(self.kind, state).items()
                if metric not in self.leave_out]
