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
