"""The docker actuator, through the real docker SDK and its real HTTP-over-UNIX-socket
transport, against a stand-in Docker Engine (tests/integration/docker_standin.py).

A real Docker engine cannot run on this machine (no daemon, no privileges for containers),
so the engine is a local server speaking the Engine API wire protocol for the calls used:
/_ping, /version, containers/<ref>/json, /restart, /stop, /start, /events, with dockerd's status
codes (204, 304, 404 ``{"message": "No such container: ..."}``) and event log.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from docker_standin import DockerStandin, docker_stop  # beside this file; pytest puts its folder on sys.path

from autonomic.errors import PatternError, RetryableActuatorError, TerminalActuatorError
from autonomic.execute.docker_actuator import DockerActuator, DockerBinding, DockerParams
from autonomic.plan.patterns import load_patterns
from autonomic.protocols import Actuator, ActuatorContext, Target
from autonomic.registry import Registry


class WallClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[DockerStandin]:
    sock = tmp_path / "docker.sock"
    short_dir = None
    if len(str(sock)) > 100:  # AF_UNIX paths are limited to about 107 bytes
        short_dir = tempfile.mkdtemp(prefix="dk")
        sock = Path(short_dir) / "docker.sock"
    standin = DockerStandin(sock)
    standin.start()
    yield standin
    standin.stop()
    if short_dir:
        shutil.rmtree(short_dir, ignore_errors=True)


@pytest.fixture
def act(tmp_path: Path) -> DockerActuator:
    return DockerActuator(ActuatorContext(clock=WallClock(), state_dir=tmp_path))


def target(engine: DockerStandin, container: str = "web", **kw: object) -> Target:
    return Target(service="api", binding=DockerBinding(container=container, base_url=engine.base_url, **kw))


def test_docker_actuator_meets_the_protocol(act: DockerActuator) -> None:
    assert isinstance(act, Actuator)
    assert act.type == "docker"
    assert DockerParams().op == "restart" and DockerParams().timeout_s == 10


def test_restart_changes_started_at_and_then_counts_as_applied(
    act: DockerActuator, engine: DockerStandin
) -> None:
    c = engine.add("web")
    t, p = target(engine), DockerParams(op="restart", timeout_s=3)
    snap = act.snapshot(t, p)
    assert snap["id"] == c.id and snap["name"] == "web" and snap["running"] is True
    assert snap["started_at"] == c.started_at and snap["restart_count"] == 0
    assert act.applied(t, p, "k1", snap) is False

    detail = act.apply(t, p, "k1", snap)

    assert detail["running"] is True and detail["started_at"] != snap["started_at"]
    assert c.started_at == detail["started_at"]
    assert act.applied(t, p, "k1", snap) is True
    restarts = engine.calls("POST")
    assert [(r.path, r.query) for r in restarts] == [(f"/containers/{c.id}/restart", {"t": "3"})]
    # the default binding negotiates the API version with the engine, as the SDK does
    assert any(r.path == "/version" for r in engine.requests)
    assert all(r.api_version == "1.43" for r in engine.calls())
    assert all(r.user_agent.startswith("docker-sdk-python/") for r in engine.requests)  # the real SDK


def test_a_second_apply_with_the_same_key_does_not_restart_again(
    act: DockerActuator, engine: DockerStandin
) -> None:
    engine.add("web")
    t, p = target(engine), DockerParams()
    snap = act.snapshot(t, p)
    act.apply(t, p, "k1", snap)
    started = engine.find("web").started_at  # type: ignore[union-attr]

    again = act.apply(t, p, "k1", snap)

    assert again["noop"] is True and again["reason"] == "already applied"
    assert len(engine.calls("POST")) == 1
    assert engine.find("web").started_at == started  # type: ignore[union-attr]


def test_stop_then_undo_starts_it_again_and_undo_is_idempotent(
    act: DockerActuator, engine: DockerStandin
) -> None:
    c = engine.add("db")
    t, p = target(engine, "db"), DockerParams(op="stop", timeout_s=5)
    snap = act.snapshot(t, p)

    detail = act.apply(t, p, "k2", snap)
    assert detail["running"] is False and c.running is False and detail["status"] == "exited"
    assert act.applied(t, p, "k2", snap) is True
    assert engine.calls("POST")[-1].query == {"t": "5"}

    undone = act.undo(t, p, "k2", snap)
    assert undone["undo"] == "start" and undone["running"] is True and c.running is True
    assert act.undo(t, p, "k2", snap)["undo"] == "nothing to do"
    assert [r.path.rsplit("/", 1)[-1] for r in engine.calls("POST")] == ["stop", "start"]


def test_start_of_a_stopped_container_and_undo_stops_it(act: DockerActuator, engine: DockerStandin) -> None:
    c = engine.add("worker", running=False)
    t, p = target(engine, "worker", api_version="1.43"), DockerParams(op="start")
    snap = act.snapshot(t, p)
    assert snap["running"] is False and snap["status"] == "created"
    assert act.applied(t, p, "k3", snap) is False

    assert act.apply(t, p, "k3", snap)["running"] is True and c.running is True
    assert act.undo(t, p, "k3", snap)["undo"] == "stop" and c.running is False
    # a pinned API version skips the negotiation request
    assert not any(r.path == "/version" for r in engine.requests)


def test_stop_of_an_already_stopped_container_sends_nothing(act: DockerActuator, engine: DockerStandin) -> None:
    engine.add("db", running=False)
    t, p = target(engine, "db"), DockerParams(op="stop")
    snap = act.snapshot(t, p)
    assert act.apply(t, p, "k", snap)["noop"] is True
    assert act.undo(t, p, "k", snap)["undo"] == "nothing to do"  # it was stopped before: stays stopped
    assert engine.calls("POST") == []


def test_restart_cannot_be_undone(act: DockerActuator, engine: DockerStandin) -> None:
    engine.add("web")
    t, p = target(engine), DockerParams()
    assert act.undo(t, p, "k", act.snapshot(t, p)) == {"undo": "not applicable", "container": "web"}
    assert engine.calls("POST") == []


def test_a_container_that_dies_right_after_restart_is_a_retryable_error(
    act: DockerActuator, engine: DockerStandin
) -> None:
    engine.add("web", dies_on_start=3)
    t, p = target(engine), DockerParams()
    snap = act.snapshot(t, p)
    with pytest.raises(RetryableActuatorError, match=r"not running after restart.*exit code 3"):
        act.apply(t, p, "k", snap)
    assert act.applied(t, p, "k", snap) is False


def test_unknown_container_is_terminal_and_named(act: DockerActuator, engine: DockerStandin) -> None:
    t, p = target(engine, "ghost"), DockerParams()
    with pytest.raises(TerminalActuatorError, match="no such container 'ghost'"):
        act.snapshot(t, p)
    with pytest.raises(TerminalActuatorError, match="'ghost'"):
        act.apply(t, p, "k", {})
    assert [r.path for r in engine.calls()] == ["/containers/ghost/json", "/containers/ghost/json"]


def test_a_container_removed_after_the_snapshot_is_terminal(act: DockerActuator, engine: DockerStandin) -> None:
    c = engine.add("web")
    t, p = target(engine), DockerParams()
    snap = act.snapshot(t, p)
    del engine.containers[c.id]
    engine.add("web")  # recreated under the same name: not the container we snapshotted
    with pytest.raises(TerminalActuatorError, match="no such container 'web'"):
        act.apply(t, p, "k", snap)
    assert engine.calls("POST") == []


def test_other_engine_errors_are_terminal_with_status_and_truncated_message(
    act: DockerActuator, engine: DockerStandin
) -> None:
    engine.add("web")
    t, p = target(engine), DockerParams()
    snap = act.snapshot(t, p)
    engine.fail_next(500, "Cannot restart container web: " + "x" * 1000)
    with pytest.raises(TerminalActuatorError) as info:
        act.apply(t, p, "k", snap)
    message = str(info.value)
    assert "HTTP 500" in message and "Cannot restart container web" in message
    assert len(message) < 500 and message.endswith("...")


def test_engine_down_is_retryable(act: DockerActuator, engine: DockerStandin) -> None:
    engine.add("web")
    t, p = target(engine), DockerParams()
    snap = act.snapshot(t, p)
    engine.stop()
    with pytest.raises(RetryableActuatorError, match="unreachable"):
        act.apply(t, p, "k", snap)
    with pytest.raises(RetryableActuatorError, match="unreachable"):  # pinned version: no negotiation
        act.applied(target(engine, api_version="1.43"), p, "k", snap)


def test_an_engine_slower_than_the_timeout_is_retryable(act: DockerActuator, engine: DockerStandin) -> None:
    engine.add("web")
    engine.delay_s = 0.5
    t = target(engine, timeout_s=0.1, api_version="1.43")
    started = time.monotonic()
    with pytest.raises(RetryableActuatorError, match="unreachable"):
        act.snapshot(t, DockerParams())
    assert time.monotonic() - started < 0.45
    engine.delay_s = 0.0


def test_describe_makes_no_request(act: DockerActuator, engine: DockerStandin) -> None:
    engine.add("web")
    text = act.describe(target(engine), DockerParams(op="stop", timeout_s=7))
    assert text == f"stop docker container 'web' of api at {engine.base_url} (stop grace 7 s)"
    assert engine.requests == []


def test_without_the_docker_sdk_the_error_says_what_to_install(
    act: DockerActuator, engine: DockerStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)  # import docker now raises ImportError
    with pytest.raises(TerminalActuatorError, match=r"install autonomic\[docker\]"):
        act.snapshot(target(engine), DockerParams())
    assert act.describe(target(engine), DockerParams()).startswith("restart docker container")


def test_the_module_imports_and_validates_params_without_the_docker_sdk() -> None:
    code = (
        "import sys; sys.modules['docker'] = None\n"
        "from autonomic.execute.docker_actuator import DockerActuator, DockerParams\n"
        "print(DockerActuator.type, DockerParams(op='stop').timeout_s)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "docker 10"


def test_binding_and_params_reject_bad_values_naming_the_field() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="base_url"):
        DockerBinding(container="web", base_url="/var/run/docker.sock")
    with pytest.raises(ValidationError, match="container"):
        DockerBinding(container="")
    with pytest.raises(ValidationError, match="api_version"):
        DockerBinding(container="web", api_version="latest")
    with pytest.raises(ValidationError, match="timeout_s"):
        DockerParams(timeout_s=601)
    with pytest.raises(ValidationError, match="op"):
        DockerParams.model_validate({"op": "kill"})


def test_the_pattern_loader_accepts_docker_actions_when_registered(tmp_path: Path) -> None:
    reg = Registry()
    reg.register("actuator", DockerActuator.type, DockerActuator)
    good = tmp_path / "good.yaml"
    good.write_text(
        "id: container-down-restart\n"
        "match: {cause: down}\n"
        "action: {type: docker, params: {op: restart, timeout_s: 20}}\n"
        "prior_confidence: 0.7\n"
        "verify: {metric: probe_ok, min: 1}\n"
    )
    [pattern] = load_patterns([good], reg)
    assert pattern.action is not None and pattern.action.type == "docker"
    assert pattern.action.params == {"op": "restart", "timeout_s": 20}

    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("timeout_s: 20", "timeout_s: 900"))
    with pytest.raises(PatternError, match=r"bad.yaml:3: action.params.timeout_s"):
        load_patterns([bad], reg)


def test_unit_exit_says_how_an_exited_container_ended_and_nothing_for_a_running_one(
    act: DockerActuator, engine: DockerStandin
) -> None:
    """``unit_exit`` inspects the container through the real SDK against the stand-in engine:
    State.Status exited with ExitCode and OOMKilled, or dead; None while it runs or was only
    created."""
    engine.add("web")
    assert act.unit_exit(target(engine)) is None
    engine.add("worker", running=False, started_at=engine.now(), exit_code=137, oom_killed=True)
    assert act.unit_exit(target(engine, "worker")) == "container worker exited with code 137 (OOMKilled)"
    engine.add("batch", running=False, started_at=engine.now(), exit_code=2)
    assert act.unit_exit(target(engine, "batch")) == "container batch exited with code 2"
    engine.add("stuck", running=False, started_at=engine.now(), exit_code=1, status="dead")
    assert act.unit_exit(target(engine, "stuck")) == "container stuck is dead, having exited with code 1"
    engine.add("fresh", running=False)  # created, never started
    assert act.unit_exit(target(engine, "fresh")) is None
    with pytest.raises(TerminalActuatorError, match="no such container"):
        act.unit_exit(target(engine, "ghost"))


def test_unit_state_tells_a_docker_stop_from_an_exit_by_the_engines_stop_event_since_the_last_start(
    act: DockerActuator, engine: DockerStandin
) -> None:
    """A container stopped through the Engine API (the docker SDK's stop, as ``docker stop`` sends
    it) reads ``stopped_by_request``: the stand-in logs kill, die and stop, as dockerd does, and the
    actuator finds the stop in ``GET /events`` since the container's StartedAt. One that exits on
    its own (die only) does not, nor one restarted (its stop older than the new start) that then
    crashes. A running container's read asks no events; an exit found to be a stop is not asked
    about again."""
    import docker

    engine.add("web")
    engine.add("worker")
    t_web, t_worker = target(engine), target(engine, "worker")
    assert "stopped_by_request" not in act.unit_state(t_web)
    assert not [r for r in engine.requests if r.path == "/events"]
    client = docker.DockerClient(base_url=engine.base_url, version="1.43")
    try:
        client.api.stop("web", timeout=1)  # a person's docker stop
        client.api.restart("worker", timeout=1)  # a person's docker restart: stop, start
    finally:
        client.close()
    state = act.unit_state(t_web)
    assert (state["Status"], state["stopped_by_request"]) == ("exited", True)
    engine.crash(engine.find("worker"), exit_code=137)  # then it dies on its own
    state = act.unit_state(t_worker)
    assert (state["Status"], state["ExitCode"], state["stopped_by_request"]) == ("exited", 137, False)
    asked = len([r for r in engine.requests if r.path == "/events"])
    assert act.unit_state(t_web)["stopped_by_request"] is True  # remembered: the same exit
    assert len([r for r in engine.requests if r.path == "/events"]) == asked
    [events] = [r for r in engine.requests if r.path == "/events"][:1]
    assert json.loads(events.query["filters"]) == {"container": [engine.find("web").id], "type": ["container"],
                                                   "event": ["stop"]}
    act.apply(t_web, DockerParams(op="start"), "k1", act.snapshot(t_web, DockerParams(op="start")))
    engine.crash(engine.find("web"), exit_code=1)  # started again, then a crash: its old stop is older
    assert act.unit_state(t_web)["stopped_by_request"] is False


def test_a_stop_whose_event_comes_late_is_found_later_and_a_crash_is_judged_once_none_can_come(
    act: DockerActuator, engine: DockerStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dockerd logs ``stop`` once the stop is done (the network and mounts released), which may be
    a while after the exit. A read before it says not stopped, and asks again at the next read,
    which finds it; that answer is kept (no more events asked). A crash is asked about until the
    engine's present is the settle time past the first look (3 s here), then kept as not stopped.
    (The engine's present is its Date, whole seconds, and a second more: the lag and the sleeps
    leave a second or more of margin either side.)"""
    from autonomic.execute import docker_actuator

    monkeypatch.setattr(docker_actuator, "_STOP_SETTLE_NS", 3_000_000_000)

    def asked() -> int:
        return len([r for r in engine.requests if r.path == "/events"])

    engine.add("web")
    engine.stop_event_lag_s = 3.0
    docker_stop(engine, "web")
    assert act.unit_state(target(engine))["stopped_by_request"] is False  # not logged yet
    time.sleep(3.2)
    assert act.unit_state(target(engine))["stopped_by_request"] is True
    before = asked()
    assert act.unit_state(target(engine))["stopped_by_request"] is True
    assert asked() == before  # kept
    engine.add("worker")
    engine.crash(engine.find("worker"), exit_code=3)
    assert act.unit_state(target(engine, "worker"))["stopped_by_request"] is False
    assert act.unit_state(target(engine, "worker"))["stopped_by_request"] is False
    assert asked() == before + 2  # not final yet: asked again
    time.sleep(4.2)
    assert act.unit_state(target(engine, "worker"))["stopped_by_request"] is False  # final now
    assert act.unit_state(target(engine, "worker"))["stopped_by_request"] is False
    assert asked() == before + 3


def test_a_restart_whose_start_failed_is_a_fault_not_a_stop(act: DockerActuator, engine: DockerStandin) -> None:
    """``docker restart`` (or autonomic's own) stops the container, logging ``stop``, then its start
    fails (a port taken): the container is exited with its old StartedAt and State.Error set, as
    dockerd leaves it. That is not a person's stop: it reads down, not stopped on purpose."""
    import docker

    engine.add("web", fails_to_start="port 8080 is already allocated")
    client = docker.DockerClient(base_url=engine.base_url, version="1.43")
    try:
        with pytest.raises(docker.errors.APIError, match="already allocated"):
            client.api.restart("web", timeout=1)
    finally:
        client.close()
    state = act.unit_state(target(engine))
    assert (state["Status"], state["Error"], state["stopped_by_request"]) == (
        "exited", "port 8080 is already allocated", False)


def test_an_engine_that_refuses_events_is_said_once_and_its_exited_containers_read_as_before(
    act: DockerActuator, engine: DockerStandin, caplog: pytest.LogCaptureFixture
) -> None:
    """A socket proxy or an authorization plugin may refuse ``GET /events``: the unit is still read
    (exited, not stopped on purpose: down, as before), the refusal is said once naming the engine,
    and events are not asked of it again."""
    import logging

    caplog.set_level(logging.WARNING, logger="autonomic")
    engine.events_refused = (403, "authorization denied by plugin: events not allowed")
    engine.add("web")
    engine.add("worker")
    docker_stop(engine, "web")
    engine.crash(engine.find("worker"))
    for name in ("web", "worker", "web"):
        state = act.unit_state(target(engine, name))
        assert (state["Status"], state["stopped_by_request"]) == ("exited", False)
    assert len([r for r in engine.requests if r.path == "/events"]) == 1
    said = [r.getMessage() for r in caplog.records if "GET /events" in r.getMessage()]
    assert len(said) == 1 and "HTTP 403" in said[0] and engine.base_url in said[0], said


def test_an_events_stream_held_open_past_the_read_timeout_ends_the_look_with_what_it_held(
    act: DockerActuator, engine: DockerStandin
) -> None:
    """The docker SDK's own events() reads with no timeout: an engine that holds the events stream
    open (a ``Date`` from a proxy's clock ahead of the engine's makes the ``until`` asked for still
    to come) would hold the unit-state read, and its lane, for good. The actuator reads with the
    read's timeout (the binding's 1 s here): a stop in what came is found at once; with none, the
    look ends at the timeout as "not stopped, not final" (the container reads down, and is asked
    about again), never an error that would leave a dead container unknown for good."""
    engine.add("web")
    engine.add("worker")
    docker_stop(engine, "web")
    engine.crash(engine.find("worker"))
    time.sleep(1.1)  # the engine's Date (whole seconds) is past both: they are in what comes at once
    engine.events_delay_s = 8.0
    t_web, t_worker = target(engine, "web", timeout_s=1), target(engine, "worker", timeout_s=1)
    t0 = time.monotonic()
    assert act.unit_state(t_web)["stopped_by_request"] is True
    assert time.monotonic() - t0 < 1.0
    asked = len([r for r in engine.requests if r.path == "/events"])
    for _ in range(2):
        t0 = time.monotonic()
        assert act.unit_state(t_worker)["stopped_by_request"] is False
        assert time.monotonic() - t0 < act.unit_state_limit_s(t_worker) < 8.0
    assert len([r for r in engine.requests if r.path == "/events"]) == asked + 2  # not final: asked again


def test_an_events_error_other_than_no_access_leaves_the_unit_unknown_and_is_asked_again(
    act: DockerActuator, engine: DockerStandin
) -> None:
    """A socket proxy's 502 while dockerd restarts is not a refusal for good: the read fails
    (the unit unknown, not down: a person's stop is not taken for a crash on a passing error) and
    the next read asks again and judges."""
    engine.add("web")
    docker_stop(engine, "web")
    engine.events_refused = (502, "Bad Gateway")
    with pytest.raises(TerminalActuatorError, match="HTTP 502"):
        act.unit_state(target(engine))
    engine.events_refused = None
    assert act.unit_state(target(engine))["stopped_by_request"] is True


def test_a_judged_stop_stays_judged_after_dockerd_forgot_its_event_and_a_new_exit_is_judged_anew(
    act: DockerActuator, engine: DockerStandin
) -> None:
    """dockerd keeps its latest 256 events: a busy engine forgets a stop within minutes. Judged
    once, the stop is kept with the exit it is of, one entry per container, not in a memory wiped
    when full; the container's next exit (started again, then crashed) is judged anew."""
    engine.add("web")
    docker_stop(engine, "web")
    assert act.unit_state(target(engine))["stopped_by_request"] is True
    engine.events.clear()  # forgotten by dockerd
    assert act.unit_state(target(engine))["stopped_by_request"] is True
    act.apply(target(engine), DockerParams(op="start"), "k1", act.snapshot(target(engine), DockerParams(op="start")))
    engine.crash(engine.find("web"))
    assert act.unit_state(target(engine))["stopped_by_request"] is False
    assert len(act._stops) <= 1 and len(act._first_looked) <= 1


def test_times_as_dockerd_writes_them_are_read_to_the_nanosecond_and_its_zero_time_is_none() -> None:
    from autonomic.execute.docker_actuator import _newer_stop, _rfc3339_ns

    assert _rfc3339_ns("2024-05-01T10:00:00.123456789Z") == 1714557600_123456789
    assert _rfc3339_ns("2024-05-01T12:00:00.5+02:00") == 1714557600_500000000
    assert _rfc3339_ns("2024-05-01T10:00:00Z") == 1714557600_000000000
    for never in ("0001-01-01T00:00:00Z", "", None, "yesterday", "2024-13-01T10:00:00Z"):
        assert _rfc3339_ns(never) is None
    stop = {"Action": "stop", "Actor": {"ID": "abc"}, "timeNano": 20}
    assert _newer_stop(json.dumps(stop).encode(), "abc", 10)
    assert not _newer_stop(json.dumps(stop).encode(), "abc", 20)  # not after the start
    assert not _newer_stop(json.dumps({**stop, "Action": "die"}).encode(), "abc", 10)
    assert not _newer_stop(json.dumps({**stop, "Actor": {"ID": "other"}}).encode(), "abc", 10)
    for junk in (b"not json", b"[1, 2]", json.dumps({**stop, "Actor": "abc"}).encode()):
        assert not _newer_stop(junk, "abc", 10)
