"""The engine survives being killed: a real ``autonomic run`` process, a real demo service.

The acceptance test of the crash-safe journal: the engine is killed with SIGKILL while a
graceful restart is in flight (the action is RUNNING: the service got SIGTERM and is still
draining), started again with the same config, and the interrupted action is reconciled
from the store: restarted exactly once, verified, SUCCEEDED, never lost and never repeated.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import pytest
import yaml

from autonomic.demo import faults
from autonomic.knowledge import Store
from autonomic.model import Action, ActionState, Incident, IncidentState

T = TypeVar("T")

MIB = 1024 * 1024
SHUTDOWN_DELAY_S = 3.0  # the service drains this long after SIGTERM: the window the kill lands in
RENAME = {
    "demo_error_rate": "error_rate",
    "demo_latency_ms": "latency_ms",
    "demo_pool_in_use": "pool_in_use",
    "demo_pool_size": "pool_size",
    "demo_pool_utilization": "pool_utilization",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args], cwd=repo,
                   check=True, capture_output=True)


@dataclass
class Rig:
    """One tmp folder: the service's config repo, autonomic.yaml and every engine started on it."""

    root: Path
    port: int
    config: Path
    state_dir: Path
    starts_log: Path
    engines: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "run" / "pids" / "app.json"

    def start_engine(self) -> subprocess.Popen[bytes]:
        n = len(self.engines) + 1
        with open(self.root / f"engine-{n}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "autonomic.cli", "run", "-c", str(self.config)],
                cwd=self.root, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        self.engines.append(proc)
        return proc

    def logs(self) -> str:
        """Every engine's log and the service's, for assertion messages."""
        parts = []
        for path in [*sorted(self.root.glob("engine-*.log")), self.state_dir / "run" / "logs" / "app.log"]:
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def wait(self, predicate: Callable[[], T | None], timeout: float, what: str, step: float = 0.1) -> T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            for proc in self.engines[-1:]:
                if proc.poll() is not None:
                    raise AssertionError(f"engine exited with {proc.returncode} while waiting for {what}\n"
                                         f"{self.logs()}")
            time.sleep(step)
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{self.logs()}")

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def starts(self) -> list[dict[str, Any]]:
        if not self.starts_log.exists():
            return []
        lines = self.starts_log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]


def _write_config(root: Path, port: int) -> Path:
    repo = root / "app"
    repo.mkdir()
    (repo / "config.yaml").write_text(yaml.safe_dump({"pool": {"size": 50}, "features": {"fast_path": False}},
                                                     sort_keys=False))
    _git(repo, "init", "-q")
    _git(repo, "add", "config.yaml")
    _git(repo, "commit", "-q", "-m", "app: initial config")
    url = f"http://127.0.0.1:{port}"
    spec = {
        "api": {"port": 0},  # a free loopback port: tests never fight over 8470
        "engine": {"interval_s": 0.5, "state_dir": str(root / "state"), "host_metrics": False,
                   "resolve_after_s": 30, "settle_s": 5, "time_scale": 0.1},
        "services": [{
            "name": "app",
            "type": "demo",
            "probes": [{"type": "http", "url": f"{url}/health", "timeout_s": 1}],
            "metrics": [{"type": "prometheus", "url": f"{url}/metrics", "rename": RENAME}],
            "thresholds": {"memory_percent": 85, "error_rate": 0.05, "latency_ms": 1000,
                           "pool_utilization": 90},
            "trends": [{"metric": "memory_percent", "window_s": 6, "min_points": 8, "horizon_s": 600,
                        "min_r2": 0.8, "z_min": 3}],
            "actuators": {
                "process": {
                    "command": [sys.executable, "-m", "autonomic.demo.service", "--name", "app",
                                "--port", str(port), "--config", str(repo / "config.yaml"),
                                "--starts-log", str(root / "starts.jsonl"),
                                "--shutdown-delay", str(SHUTDOWN_DELAY_S)],
                    "memory_limit_bytes": 200 * MIB,
                    "stop_timeout_s": 5,
                },
                "config": {"repo": str(repo), "file": "config.yaml", "reload_signal": "SIGHUP"},
            },
        }],
        "policy": {"enabled": True, "autonomy": "auto", "confidence_threshold": 0.5,
                   "rate_limits": {"per_day": 50, "per_week": 200, "per_service_day": 20,
                                   "per_service_week": 60}},
        "notifiers": [{"type": "jsonl", "path": str(root / "notifications.jsonl")}],
    }
    path = root / "autonomic.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _ours(proc: psutil.Process, rig: Rig) -> bool:
    with contextlib.suppress(psutil.Error):
        return str(rig.config) in proc.cmdline() or str(rig.root / "starts.jsonl") in proc.cmdline()
    return False


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    port = _free_port()
    config = _write_config(tmp_path, port)
    r = Rig(root=tmp_path, port=port, config=config, state_dir=tmp_path / "state",
            starts_log=tmp_path / "starts.jsonl")
    try:
        yield r
    finally:
        for proc in r.engines:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        # every service instance ever started logged its pid; kill any still alive (and ours)
        for start in r.starts():
            with contextlib.suppress(psutil.Error):
                svc = psutil.Process(int(start["pid"]))
                if _ours(svc, r):
                    os.killpg(svc.pid, signal.SIGKILL)


def _stop_engine(rig: Rig, proc: subprocess.Popen[bytes], timeout: float) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"engine did not stop within {timeout:g} s of SIGTERM\n{rig.logs()}") from None


def _service_identity(rig: Rig) -> tuple[int, float]:
    record = json.loads(rig.pidfile.read_text())
    return int(record["pid"]), float(record["create_time"])


def _gone(pid: int, create_time: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - create_time) > 0.01 or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_sigkill_mid_action_is_reconciled_after_restart_not_lost_and_not_repeated(rig: Rig) -> None:
    """A memory leak is forecast and a graceful restart of ``app`` starts (action RUNNING). The
    engine is SIGKILLed right then, while the service is still draining its SIGTERM. A new
    engine on the same config and store asks the actuator whether the restart took effect,
    finishes it if not, verifies it and records SUCCEEDED: one action row, one
    ``action.running`` audit entry, exactly one restart of the service (two starts in its
    starts log), an intact audit chain, and SIGTERM then stops engine and service cleanly."""
    first = rig.start_engine()
    rig.wait(rig.healthy, 20, "the service to be healthy under the first engine")
    store = Store(f"sqlite:///{rig.state_dir / 'autonomic.db'}")
    try:
        faults.inject(rig.url, "memory_leak", rate_mb=20, limit_mb=150)

        def running() -> Action | None:
            return next((a for a in store.actions(service="app") if a.state == ActionState.RUNNING), None)

        action = rig.wait(running, 40, "an action in state RUNNING", step=0.03)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        assert first.returncode == -signal.SIGKILL

        # the kill landed mid-action: the journal says RUNNING and nothing after it
        assert action.type == "process" and action.params["op"] == "graceful_restart"
        assert action.pattern_id == "memory-leak-graceful-restart"
        interrupted = store.get(Action, action.id)
        assert interrupted is not None and interrupted.state == ActionState.RUNNING, rig.logs()
        assert not any(s.name == "apply" for s in interrupted.steps)
        assert len(rig.starts()) == 1

        second = rig.start_engine()

        def terminal() -> Action | None:
            current = store.get(Action, action.id)
            return current if current is not None and current.state.terminal else None

        done = rig.wait(terminal, 60, "the interrupted action to reach a terminal state", step=0.2)
        assert done.state == ActionState.SUCCEEDED, f"{done.state}: {done.error}\n{rig.logs()}"
        assert "apply" in [s.name for s in done.steps]
        assert [a.id for a in store.actions(incident_id=action.incident_id)] == [action.id]
        incident = store.get(Incident, action.incident_id)
        assert incident is not None and incident.state == IncidentState.RESOLVED

        running_events = [e for e in store.audit_events(subject=action.id) if e.kind == "action.running"]
        assert len(running_events) == 1
        assert len([e for e in store.audit_events() if e.kind == "engine.started"]) == 2
        starts = [s for s in rig.starts() if s["name"] == "app"]
        assert len(starts) == 2, f"want the first start and exactly one restart: {starts}\n{rig.logs()}"
        assert starts[0]["pid"] != starts[1]["pid"]
        assert store.verify_audit().ok, store.verify_audit().problems

        pid, create_time = _service_identity(rig)
        assert pid == starts[1]["pid"]
        assert _stop_engine(rig, second, timeout=20) == 0, rig.logs()
        assert _gone(pid, create_time), "the supervised service outlived the engine"
        assert not rig.pidfile.exists()
    finally:
        store.close()


def test_sigterm_stops_the_engine_cleanly_and_a_restart_finds_nothing_half_done(rig: Rig) -> None:
    """SIGTERM during normal operation: the engine exits 0 within a few seconds, writes
    ``engine.stopped`` and stops its service; a new engine on the same store starts with no
    action left non-terminal, and stops cleanly again."""
    first = rig.start_engine()
    rig.wait(rig.healthy, 20, "the service to be healthy")
    status = rig.state_dir / "status.json"
    rig.wait(lambda: status.exists() and json.loads(status.read_text())["health"].get("app"), 10,
             "the engine to report the service's health")
    pid, create_time = _service_identity(rig)
    started = time.monotonic()
    assert _stop_engine(rig, first, timeout=10) == 0, rig.logs()
    assert time.monotonic() - started < SHUTDOWN_DELAY_S + 4
    assert _gone(pid, create_time)

    store = Store(f"sqlite:///{rig.state_dir / 'autonomic.db'}")
    try:
        kinds = [e.kind for e in store.audit_events()]
        assert kinds[0] == "engine.started" and kinds[-1] == "engine.stopped"
        assert kinds.count("engine.stopped") == 1

        second = rig.start_engine()
        rig.wait(rig.healthy, 20, "the service to be healthy under the second engine")
        rig.wait(lambda: [e for e in store.audit_events() if e.kind == "engine.started"][1:], 10,
                 "the second engine.started event")
        assert [a for a in store.actions() if not a.state.terminal] == []
        assert _stop_engine(rig, second, timeout=10) == 0, rig.logs()
        kinds = [e.kind for e in store.audit_events()]
        assert kinds.count("engine.started") == 2 and kinds[-1] == "engine.stopped"
        assert [a for a in store.actions() if not a.state.terminal] == []
        assert len(rig.starts()) == 2  # one start per engine: the first engine stopped its service
        assert store.verify_audit().ok
    finally:
        store.close()
