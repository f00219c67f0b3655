"""The engine over a ServerClock (PostgreSQL's time): times this host stamps by its own clock are
taken onto the server's before they are compared with the engine's ``now``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from autonomic.clock import ServerClock
from autonomic.config import load_config_data
from autonomic.engine import Engine
from autonomic.knowledge import Store
from autonomic.model import FindingKind, Incident, Severity


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "-C", str(repo), *args],
                   check=True, capture_output=True)


def _skewed_clock(host_ahead_s: float) -> ServerClock:
    """A ServerClock as measured on a host whose clock is ``host_ahead_s`` ahead of the server's."""
    clock = ServerClock()
    clock.offset, clock.measured = -host_ahead_s, True
    return clock


@pytest.mark.parametrize("host_ahead_s", [1200.0, -1200.0])
def test_a_config_commit_made_just_now_on_this_host_matches_after_change_s_whatever_its_clocks_skew(
        tmp_path: Path, host_ahead_s: float) -> None:
    """git stamps a commit by this host's clock; with this host 20 minutes ahead of the database
    server (or behind it), a change committed a moment ago is still a moment ago for
    ``after_change_s`` (error-spike-after-config-revert takes the error spike), not 20 minutes in
    the future or the past."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "app.yaml").write_text("workers: 4\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "app.yaml")
    _git(repo, "commit", "-q", "-m", "first version")
    (repo / "app.yaml").write_text("workers: 8\n")
    _git(repo, "commit", "-q", "-am", "more workers")
    config = load_config_data({
        "engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False},
        "services": [{"name": "api", "actuators": {"config": {"repo": str(repo), "file": "app.yaml"}}}],
    }, source="test.yaml", base_dir=tmp_path)
    clock = _skewed_clock(host_ahead_s)
    engine = Engine(config, clock=clock, store=Store("sqlite://"), sources=[])
    now = clock.now()
    inc = Incident(service="api", cause="errors", severity=Severity.CRITICAL, kind=FindingKind.THRESHOLD,
                   opened_at=now, updated_at=now, last_finding_at=now, summary="error_rate 0.3 over 0.05")

    diagnosis = engine._diagnosis_for(inc, now)

    assert diagnosis.pattern_id == "error-spike-after-config-revert", diagnosis.rationale
    assert diagnosis.action is not None and diagnosis.action.params["op"] == "revert_last"


def test_one_engine_without_leader_election_measures_the_servers_clock_again_as_it_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replicas measure at every lease round; one engine over PostgreSQL, with no lease, measured
    once at start and then kept that offset for ever (a host clock stepped by NTP later, or a
    first measurement dropped as too slow, was never corrected). Now its loop measures every
    CLOCK_SYNC_S. (SQLite stands in for PostgreSQL: the server's time is what the store says.)"""
    import time

    from autonomic.engine import CLOCK_SYNC_S

    config = load_config_data({"engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False}},
                              source="test.yaml", base_dir=tmp_path)
    store = Store("sqlite://")
    clock = ServerClock()
    engine = Engine(config, clock=clock, store=store, sources=[])
    engine._sync_clock()
    assert abs(clock.offset) < 1.0
    monkeypatch.setattr(store, "server_time", lambda: time.time() + 300.0)  # the server says 5 min later
    engine.tick()
    assert clock.offset == pytest.approx(300.0, abs=1.0)
    monkeypatch.setattr(store, "server_time", lambda: time.time() + 900.0)
    engine.tick()  # within CLOCK_SYNC_S of the last measurement: not asked again
    assert clock.offset == pytest.approx(300.0, abs=1.0)
    engine._next_clock_sync -= CLOCK_SYNC_S
    engine.tick()
    assert clock.offset == pytest.approx(900.0, abs=1.0)
    engine.shutdown()
