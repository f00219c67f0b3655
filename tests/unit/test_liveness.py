"""The loop's watchdog (autonomic.liveness) and how long the engine lets one step last before its
loop counts as stuck (Engine.stuck_after_s, worked out from the config)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from autonomic.config import load_config_data
from autonomic.engine import Engine
from autonomic.knowledge import Store
from autonomic.knowledge.store import _pg_call_limit_s
from autonomic.liveness import Watchdog


def test_the_watchdog_names_the_step_the_loop_is_stuck_in_once_it_lasts_past_the_limit() -> None:
    t = [100.0]
    dog = Watchdog(30.0, lambda: t[0])
    assert dog.stuck() is None and dog.doing == "starting"
    dog.beat("collecting from source web:probe")
    t[0] += 30.0
    assert dog.stuck() is None
    t[0] += 0.5
    assert dog.stuck() == ("the engine loop has made no progress for 30 s (limit 30 s): stuck in collecting "
                           "from source web:probe")
    dog.beat("waiting for the next tick")
    assert dog.stuck() is None and dog.silent_s() == 0.0


def test_a_watchdog_without_a_positive_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="stuck_after_s"):
        Watchdog(0.0, lambda: 0.0)


def _engine(tmp_path: Path, engine: dict[str, object] | None = None, **service: object) -> Engine:
    config = load_config_data({
        "engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False, "interval_s": 5, **(engine or {})},
        "services": [{"name": "web", **service}],
    }, source="test.yaml", base_dir=tmp_path)
    return Engine(config, store=Store("sqlite://"), sources=[])


def test_the_loop_counts_as_stuck_after_the_longest_step_the_config_allows(tmp_path: Path) -> None:
    """The wait for the next tick, the longest actuator call a service's bindings allow (a runbook's
    timeout_s, the kill and the output's drain) and the pause before a retry, and three store calls
    (SQLite: 20 s each); a verification window is queued work, not a step, and does not count."""
    runbook = {"type": "shell", "params": {"argv": [sys.executable, "-c", "pass"], "timeout_s": 100}}
    engine = _engine(tmp_path, actuators={"shell": {}}, fallback=runbook)
    try:
        assert engine.stuck_after_s == 5 + (100 + 1 + 5) + 5 + 3 * 20
        assert "shell on web" in engine.stuck_basis
        assert engine.watchdog.stuck_after_s == engine.stuck_after_s
    finally:
        engine.shutdown()


def test_a_service_s_probes_count_one_after_another_and_without_actuators_the_slowest_source_sets_it(
        tmp_path: Path) -> None:
    probes = [{"url": "http://127.0.0.1:9/a", "timeout_s": 10}, {"url": "http://127.0.0.1:9/b", "timeout_s": 5}]
    engine = _engine(tmp_path, probes=probes)
    try:
        assert engine.stuck_after_s == 5 + 2 * (10 + 5) + 3 * 20
        assert "the probes of web" in engine.stuck_basis
    finally:
        engine.shutdown()


def test_stuck_after_s_in_the_config_wins_and_the_worked_out_bound_is_still_told(tmp_path: Path) -> None:
    engine = _engine(tmp_path, engine={"stuck_after_s": 42})
    try:
        assert engine.stuck_after_s == 42
        assert engine.stuck_basis.startswith("engine.stuck_after_s; worked out from the config: 65 s")
    finally:
        engine.shutdown()


def test_a_store_call_over_postgresql_is_bounded_by_the_connect_timeout_the_write_lock_and_a_dead_connection(
) -> None:
    """libpq's defaults: 10 s to connect, 10 s for the write lock, 30 s of unacknowledged data;
    the URL's own values win; without tcp_user_timeout (an old libpq) the keepalives find a dead
    connection (15 s idle, then 3 probes 5 s apart)."""
    assert _pg_call_limit_s({"connect_timeout": 10, "tcp_user_timeout": 30_000}) == 50.0
    assert _pg_call_limit_s({"connect_timeout": "2", "tcp_user_timeout": "5000"}) == 17.0
    assert _pg_call_limit_s({"connect_timeout": 10, "keepalives_idle": 15, "keepalives_interval": 5,
                             "keepalives_count": 3}) == 50.0


@pytest.mark.parametrize("op", ["stop", "start"])
def test_a_process_stop_or_start_counts_the_service_s_own_stop_timeout_as_its_longest_call(
        tmp_path: Path, op: str) -> None:
    """A stop waits the binding's stop_timeout_s before its SIGKILL (and a start's undo is a stop):
    a service given 120 s to stop makes that call, and so the loop's step, that long. Taken as the
    20 s of a restart, a leader stopping it was called stuck mid-call (its lease let go, a standby
    recovering the action while the stop still ran)."""
    process = {"command": [sys.executable, "-c", "pass"], "stop_timeout_s": 120}
    fallback = {"type": "process", "params": {"op": op}}
    engine = _engine(tmp_path, actuators={"process": process}, fallback=fallback)
    try:
        assert engine.stuck_after_s >= 5 + 120 + 5 + 3 * 20
        assert "process on web" in engine.stuck_basis
    finally:
        engine.shutdown()


@pytest.mark.parametrize(("kind", "binding", "reads_s"), [
    ("systemd", {"unit": "web.service", "timeout_s": 10}, 8 * 5),
    ("docker", {"container": "web-1"}, 2 * 5),
    ("kubernetes", {"namespace": "shop", "name": "web", "api_url": "http://127.0.0.1:9"}, 2 * 2 * 5),
])
def test_reading_a_down_services_unit_state_while_diagnosing_counts_as_a_step_of_the_loop(
        tmp_path: Path, kind: str, binding: dict[str, object], reads_s: float) -> None:
    """A service with dependencies bound to systemd, Docker or Kubernetes has its unit's state read
    while a down incident of it is diagnosed (unit_exit: up to 5 s a request), a step of the loop of
    its own: the worked-out limit counts it, naming it, even when no remedy runs through that
    actuator (here no pattern is loaded: the built-in restarts through these actuators' calls are
    longer than the reads). Before, only remedies' calls were counted: a service whose only calls
    were these reads did not count toward the limit at all."""
    config = load_config_data({
        "engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False, "interval_s": 5},
        "services": [{"name": "web", "depends_on": ["api"], "actuators": {kind: binding}}, {"name": "api"}],
        "builtin_patterns": False,
    }, source="test.yaml", base_dir=tmp_path)
    engine = Engine(config, store=Store("sqlite://"), sources=[])
    try:
        assert engine.stuck_after_s >= 5 + reads_s + 3 * 20
        assert f"reading whether web's unit is dead ({kind})" in engine.stuck_basis
    finally:
        engine.shutdown()


def test_without_a_timed_call_the_basis_names_none_rather_than_a_0_s_call_of_no_source(tmp_path: Path) -> None:
    """Host metrics only (read locally, untimed), no probe, no actuator bound: before, the start's
    log line said "the longest call 0 s (no source)" while the host source ran."""
    config = load_config_data({
        "engine": {"state_dir": str(tmp_path / "state"), "host_metrics": True, "interval_s": 5},
        "services": [{"name": "web"}],
    }, source="test.yaml", base_dir=tmp_path)
    engine = Engine(config, store=Store("sqlite://"))  # its own sources: the host's metrics
    try:
        assert [type(s).__name__ for s in engine.sources] == ["HostSource"]
        assert engine.stuck_after_s == 5 + 3 * 20
        assert engine.stuck_basis == "the wait for the next tick 5 s + 3 store calls of at most 20 s"
    finally:
        engine.shutdown()
