"""A service run by systemd, Docker or Kubernetes with no probe: its unit's state, read through its
actuator every interval, is what shows it died. Each test runs a real Engine (its store, the
built-in pattern library, the real actuators and the unit-state source) against a stand-in of the
service manager speaking its real wire protocol: systemd_standin.py on a private dbus-daemon,
docker_standin.py on a UNIX socket, kube_standin.py as the API server playing the Deployment
controller (see ``_unit_host`` in test_shipped_patterns.py). The clock is a FakeClock moved one
second per tick."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from servers import free_port
from test_shipped_patterns import UNIT_RESTARTS, Rig, UnitHost, _unit_host, _unit_rig

from autonomic.model import ActionState, IncidentState, Level

BINDINGS_UNREACHABLE = {
    "systemd": lambda tmp: {"unit": "web.service", "bus_address": f"unix:path={tmp}/no-bus", "timeout_s": 1},
    "docker": lambda tmp: {"container": "web-1", "base_url": f"unix://{tmp}/no-docker.sock", "timeout_s": 1},
    "kubernetes": lambda tmp: {"namespace": "shop", "name": "web", "api_url": f"http://127.0.0.1:{free_port()}"},
}


@pytest.mark.parametrize("kind", ["systemd", "docker", "kubernetes"])
def test_a_unit_with_no_probe_that_dies_is_seen_down_restarted_through_its_manager_and_verified_by_its_state(
    tmp_path: Path, kind: str,
) -> None:
    """web is bound to systemd, Docker or Kubernetes only, with no probe and no metrics. Its unit
    dies (a failed unit, an exited container, a workload whose one pod crash-loops): the unit's state
    says ``up`` 0, the down incident is diagnosed as that manager's restart (kept: the unit's own
    state can verify it), decided at autonomy auto, carried out through the stand-in (RestartUnit,
    POST .../restart, the rollout restart's PATCH), and verified by the unit's state: ``up`` of the
    systemd unit and the container, the workload's ``rollout_complete`` (before, nothing sampled a
    unit's state: its death was never seen)."""
    with _unit_host(kind, tmp_path) as host:
        rig = Rig(tmp_path, {"name": "web", "actuators": {kind: host.binding}})
        try:
            rig.ticks(3)
            assert rig.engine.series.latest("web", "up") is not None and rig.latest() is None
            host.die()
            rig.tick_until(lambda: (i := rig.latest("down")) is not None and i.state.terminal, limit=150)
            inc = rig.latest("down")
            assert inc is not None and inc.state == IncidentState.RESOLVED, inc
            [diagnosis] = rig.store.diagnoses(inc.id)
            assert diagnosis.pattern_id == UNIT_RESTARTS[kind]
            [action] = rig.store.actions(incident_id=inc.id)
            assert (action.type, action.state) == (kind, ActionState.SUCCEEDED)
            watched = "rollout_complete" if kind == "kubernetes" else "up"
            assert action.verify is not None
            assert (action.verify.metric, action.verify.fallback_metric) == (watched, None)
            assert host.restarts() == 1 and host.alive()
            [outcome] = rig.store.outcomes(action_id=action.id)
            assert outcome.verdict.value == "pass"
        finally:
            rig.engine.shutdown()


@pytest.mark.parametrize("kind", ["systemd", "docker", "kubernetes"])
def test_a_unit_that_cannot_be_read_gives_no_up_and_no_incident_and_one_warning_naming_the_service(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """web's manager cannot be reached (no D-Bus, no Docker engine, no API server at the binding's
    address: real connection failures, no stand-in). Unknown is not down: no ``up`` is sampled, no
    incident opens, the loop goes on, and the warning naming web is said once, not every tick."""
    caplog.set_level(logging.WARNING, logger="autonomic")
    rig = Rig(tmp_path, {"name": "web", "actuators": {kind: BINDINGS_UNREACHABLE[kind](tmp_path)}})
    try:
        rig.ticks(6)
        assert rig.engine.series.latest("web", "up") is None
        assert rig.store.incidents(service="web") == []
        said = [r.getMessage() for r in caplog.records if "unit:web" in r.getMessage()]
        assert len(said) == 1, said
        assert f"service web: cannot read its {kind} unit's state (no up sampled: unknown, not down)" in said[0]
    finally:
        rig.engine.shutdown()


def test_a_partly_available_workload_is_up_with_the_share_available_and_no_incident(tmp_path: Path) -> None:
    """web's Deployment (the Kubernetes stand-in) wants two replicas; one pod runs, the other
    crash-loops. web is up (not down: half of it serves), ``available_ratio`` says 0.5 and its
    rollout is not complete; nothing is restarted."""
    with _unit_host("kubernetes", tmp_path) as host:
        kube = host.kube
        with kube._lock:
            for key in [k for k in kube.objects if k[:2] == ("pods", "shop")]:
                del kube.objects[key]
            kube.objects[("deployments", "shop", "web")]["spec"]["replicas"] = 2
            kube.objects[("deployments", "shop", "web")]["status"]["replicas"] = 2
            kube.add_pod("shop", "web-a", {"app": "web"}, "2024-01-01T00:00:00Z")
            kube.add_pod("shop", "web-b", {"app": "web"}, "2024-01-01T00:00:00Z", [
                {"name": "web", "ready": False, "restartCount": 3,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}}])
        rig = Rig(tmp_path, {"name": "web", "actuators": {"kubernetes": host.binding}})
        try:
            rig.ticks(5)
            latest = {m: rig.engine.series.latest("web", m) for m in ("up", "available_ratio", "rollout_complete")}
            assert {m: v[1] for m, v in latest.items() if v is not None} == {
                "up": 1.0, "available_ratio": 0.5, "rollout_complete": 0.0}
            assert rig.latest("down") is None and host.restarts() == 0
        finally:
            rig.engine.shutdown()


def test_a_slow_rollout_restart_is_verified_once_the_rollout_is_done_not_after_a_guessed_minute(
    tmp_path: Path,
) -> None:
    """web (Kubernetes stand-in, no probe) crash-loops and is rollout-restarted; the new pod takes
    90 s to be created (longer than the minute the watch used to start after). The verification
    waits for the workload's rollout to complete (``rollout_complete``, read every tick), records
    when it took effect, then watches it stay complete for its window: it passes (before, a
    fixed 60 s after the patch, the rollout still running, it could not)."""
    with _unit_host("kubernetes", tmp_path, slow_rollouts=True) as host:
        rig = Rig(tmp_path, {"name": "web", "actuators": {"kubernetes": host.binding}})
        try:
            rig.ticks(3)
            host.die()
            rig.tick_until(lambda: host.restarts() == 1, limit=20)
            rig.ticks(90)
            [action] = rig.store.actions(service="web")
            assert action.state == ActionState.VERIFYING and not host.alive()
            assert not any(s.name == "took-effect" for s in action.steps)
            host.kube.finish_rollouts()
            rig.tick_until(lambda: rig.store.actions(service="web")[0].state.terminal, limit=100)
            [action] = rig.store.actions(service="web")
            assert action.state == ActionState.SUCCEEDED, action
            took = next(s for s in action.steps if s.name == "took-effect")
            assert took.detail["metric"] == "rollout_complete" and took.detail["after_s"] >= 90
            inc = rig.latest("down")
            assert inc is not None and inc.state == IncidentState.RESOLVED
        finally:
            rig.engine.shutdown()


def _person_stops(kind: str, host: UnitHost) -> str:
    """Stop web's unit as a person would, through its manager; how the engine says it was stopped."""
    if kind == "systemd":  # systemctl stop web
        unit = host.systemd.unit("web.service")
        unit.active_state, unit.sub_state, unit.main_pid = "inactive", "dead", 0
        return "its systemd unit is inactive"
    from docker_standin import docker_stop

    docker_stop(host.docker, "web-1")  # docker stop web-1
    return "its container is paused, or was stopped through Docker"


@pytest.mark.parametrize("kind", ["systemd", "docker"])
def test_a_unit_a_person_stopped_is_not_started_again_when_its_probe_fails(tmp_path: Path, kind: str) -> None:
    """web, run by systemd or Docker (the stand-ins) with a real HTTP probe answering while its
    unit runs, is stopped on purpose: ``systemctl stop`` (ActiveState inactive), or ``docker stop``
    through the Engine API (the container exited, the engine's event log holding its stop). Its
    probe fails and a down incident opens, but its unit's state says it was stopped: the restart is
    passed over, saying why, and a person gets the incident; the unit stays stopped (before, the
    failing probe had the unit started again, undoing the person's stop; a stopped container read
    as exited, down, and was restarted)."""
    with _unit_host(kind, tmp_path) as host:
        rig, server = _unit_rig(tmp_path, kind, host)
        try:
            rig.ticks(3)
            how = _person_stops(kind, host)
            rig.tick_until(lambda: (i := rig.latest("down")) is not None and bool(rig.store.decisions(i.id)))
            inc = rig.latest("down")
            assert inc is not None
            [diagnosis] = rig.store.diagnoses(inc.id)
            assert diagnosis.pattern_id == UNIT_RESTARTS[kind] and diagnosis.action is None
            assert (f"web was stopped on purpose ({how}): autonomic does not start what a "
                    "person stopped") in diagnosis.rationale, diagnosis.rationale
            rig.ticks(5)
            assert host.restarts() == 0 and not host.alive() and rig.store.actions(service="web") == []
            assert any(n.incident_id == inc.id and n.level != Level.INFO for n in rig.notifier.sent)
        finally:
            rig.engine.shutdown()
            server.shutdown()
            server.server_close()


def test_a_docker_engine_that_hangs_is_read_twice_a_collection_not_once_per_container(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Five services whose containers are on one Docker engine that accepts connections and never
    answers (a real UNIX socket, the real Docker client; no stand-in needed to hang). Each read
    waits out its timeout; they used to be made one after another for every container, every
    collection (five timeouts a collection, holding the loop). Now the engine's units are read in
    their own lane and, after two reads in a row found no answer, the other three are not asked in
    that collection: two connections a collection, and each skipped service says why, once."""
    import socket
    import threading

    caplog.set_level(logging.WARNING, logger="autonomic")
    path = tmp_path / "hung-docker.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # read nothing, answer nothing
            except OSError:
                continue

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    services = [{"name": f"web{i}", "actuators": {"docker": {"container": f"web-{i}", "base_url": f"unix://{path}",
                                                              "timeout_s": 1}}} for i in range(5)]
    rig = Rig(tmp_path, services[0], others=tuple(services[1:]))
    try:
        lanes = {getattr(src, "lane", None) for src in rig.engine.sources if src.name.startswith("unit:")}
        assert lanes == {f"the Docker engine at unix://{path}"}
        rig.ticks(1)
        assert len(held) == 2, f"{len(held)} reads of the hung engine in one collection"
        rig.ticks(1)
        assert len(held) == 4, "the next collection asks again"
        said = [r.getMessage() for r in caplog.records if "unit:web" in r.getMessage()]
        skipped = [m for m in said if "not asked: the Docker engine at unix://" in m]
        assert len(said) == 5 and len(skipped) == 3, said
        assert "gave no complete answer to 2 reads in a row in this collection" in skipped[0]
        assert all(rig.engine.series.latest(f"web{i}", "up") is None for i in range(5))
    finally:
        rig.engine.shutdown()
        stop.set()
        acceptor.join(2)
        for conn in held:
            conn.close()
        listener.close()
