"""Crash benchmark: SIGKILL the engine at random points during real remediations.

Each run starts a real demo service and a real ``autonomic run`` process, injects a fault
whose remedy is a real action (a restart, a graceful restart, a committed config change,
or a config change that verification rolls back), kills the engine with SIGKILL at a
random moment after the decision (the action may be pending, running, verifying or rolling
back), starts the engine again on the same store, and waits for the action to end. Then:

* ``lost``: an approved decision with no action, or an action that ended "succeeded"
  whose effect is not there (no restart happened / the config value is not the new one);
* ``duplicated``: the effect happened twice (more than one restart for one action, more
  than one commit or undo commit carrying the action's idempotency key);
* ``unresolved``: the action is not in a terminal state (succeeded, rolled back, failed,
  escalated, cancelled) 90 s after the restart.

Usage: ``python benchmarks/crash.py --runs 50 --json [--seed 1]``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from autonomic.demo import faults
from autonomic.knowledge import Store
from autonomic.model import Action, ActionState, Verdict

REPO = Path(__file__).resolve().parents[1]
RENAME = {"demo_error_rate": "error_rate", "demo_latency_ms": "latency_ms", "demo_pool_in_use": "pool_in_use",
          "demo_pool_size": "pool_size", "demo_pool_utilization": "pool_utilization"}
# scenario -> (fault, params, expected action type)
SCENARIOS: dict[str, tuple[str, dict[str, float], str]] = {
    "restart": ("crash", {}, "process"),
    "graceful_restart": ("memory_leak", {"rate_mb": 20, "limit_mb": 150}, "process"),
    "config_change": ("conn_leak", {"rate": 4, "limit": 38}, "config"),
    "rollback": ("latency", {"ms": 1500}, "config"),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@localhost", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout


def _setup(root: Path, port: int) -> Path:
    repo = root / "app"
    repo.mkdir()
    (repo / "config.yaml").write_text(yaml.safe_dump({"pool": {"size": 50}, "features": {"fast_path": False}},
                                                     sort_keys=False))
    _git(repo, "init", "-q")
    _git(repo, "add", "config.yaml")
    _git(repo, "commit", "-q", "-m", "initial")
    url = f"http://127.0.0.1:{port}"
    spec = {
        "api": {"port": 0},
        "engine": {"interval_s": 0.3, "state_dir": str(root / "state"), "host_metrics": False,
                   "resolve_after_s": 30, "settle_s": 5, "time_scale": 0.1},
        "services": [{
            "name": "app", "type": "demo",
            "probes": [{"type": "http", "url": f"{url}/health", "timeout_s": 1}],
            "metrics": [{"type": "prometheus", "url": f"{url}/metrics", "rename": RENAME}],
            "thresholds": {"memory_percent": 85, "error_rate": 0.05, "latency_ms": 1000, "pool_utilization": 90},
            "trends": [{"metric": m, "window_s": 5, "min_points": 8, "horizon_s": 600, "min_r2": 0.8, "z_min": 3}
                       for m in ("memory_percent", "pool_utilization")],
            "actuators": {
                "process": {"command": [sys.executable, "-m", "autonomic.demo.service", "--name", "app",
                                        "--port", str(port), "--config", str(repo / "config.yaml"),
                                        "--starts-log", str(root / "starts.jsonl"), "--window", "3",
                                        "--shutdown-delay", "1.5"],
                            "memory_limit_bytes": 200 * 1024 * 1024, "stop_timeout_s": 5, "start_grace_s": 3},
                "config": {"repo": str(repo), "file": "config.yaml"},
            },
        }],
        "patterns": [str(REPO / "src" / "autonomic" / "demo" / "patterns")],
        "policy": {"autonomy": "auto", "confidence_threshold": 0.5,
                   "rate_limits": {"per_day": 100, "per_week": 100, "per_service_day": 100, "per_service_week": 100}},
        "notifiers": [{"type": "jsonl", "path": str(root / "notifications.jsonl")}],
    }
    path = root / "autonomic.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _engine(root: Path, config: Path, n: int) -> subprocess.Popen[bytes]:
    log = open(root / f"engine-{n}.log", "wb")  # noqa: SIM115 - closed with the process by the OS
    return subprocess.Popen([sys.executable, "-m", "autonomic.cli", "run", "-c", str(config)], cwd=root,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def _wait(pred: Callable[[], Any], timeout: float, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return None


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def _kill_service(state_dir: Path) -> None:
    pidfile = state_dir / "run" / "pids" / "app.json"
    if pidfile.exists():
        try:
            pid = int(json.loads(pidfile.read_text())["pid"])
            os.killpg(pid, signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass


def one_run(scenario: str, rng: random.Random, keep: bool = False) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="autonomic-crash-"))
    port = _free_port()
    config = _setup(root, port)
    url = f"http://127.0.0.1:{port}"
    db = f"sqlite:///{root / 'state' / 'autonomic.db'}"
    fault, params, _ = SCENARIOS[scenario]
    engines: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {"scenario": scenario, "lost": 0, "duplicated": 0, "unresolved": 0}
    try:
        engines.append(_engine(root, config, 1))
        if not _wait(lambda: _healthy(url), 20):
            result["error"] = "service never healthy"
            result["unresolved"] = 1
            return result
        time.sleep(2.0)  # a short healthy baseline
        faults.inject(url, fault, **params)
        store = Store(db)
        try:
            first = _wait(lambda: store.actions(), 40, step=0.02)
            if not first:
                result["error"] = "no action within 40 s"
                result["unresolved"] = 1
                return result
            # Aim at a random state of the action's life (as soon as it is seen there), plus jitter.
            targets = ["pending", "running", "verifying"] + (["rolling_back"] if scenario == "rollback" else [])
            target = rng.choice(targets)
            order = ["pending", "running", "verifying", "rolling_back"]

            def reached(action_id: str = first[0].id, target: str = target) -> bool:
                a = store.get(Action, action_id)
                return a is not None and (a.state.terminal or (a.state.value in order
                                                               and order.index(a.state.value) >= order.index(target)))

            _wait(reached, 30, step=0.005)
            delay = rng.choice([0.0, rng.uniform(0.0, 0.3), rng.uniform(0.0, 1.5)])
            time.sleep(delay)
            result["aimed_at"] = target
            before = store.get(Action, first[0].id)
            engines[-1].send_signal(signal.SIGKILL)
            engines[-1].wait(10)
            result["killed_in"] = before.state.value if before else "?"
            result["kill_delay_s"] = round(delay, 3)
            engines.append(_engine(root, config, 2))
            action_id = first[0].id
            done = _wait(lambda: (a := store.get(Action, action_id)) is not None and a.state.terminal, 90, step=0.1)
            action = store.get(Action, action_id)
            result["final"] = action.state.value if action else "missing"
            if not done:
                result["unresolved"] = 1
            # lost: an approved decision with no action, or a claimed success whose effect is absent
            approved = [d for d in store.decisions(verdicts=[Verdict.APPROVED])]
            acted = {a.decision_id for a in store.actions()}
            if any(d.id not in acted for d in approved):
                result["lost"] = 1
            starts = [line for line in (root / "starts.jsonl").read_text().splitlines() if line.strip()]
            if action is not None:
                key = action.idempotency_key
                if action.type == "process":
                    restarts = len(starts) - 1
                    result["restarts"] = restarts
                    if restarts > 1:
                        result["duplicated"] = 1
                    if action.state == ActionState.SUCCEEDED and restarts < 1:
                        result["lost"] = 1
                else:
                    log = _git(root / "app", "log", "--format=%B")
                    applied = log.count(f"Autonomic-Action: {key}")
                    undone = log.count(f"Autonomic-Undo: {key}")
                    result["commits"] = applied
                    result["undo_commits"] = undone
                    if applied > 1 or undone > 1:
                        result["duplicated"] = 1
                    value = yaml.safe_load((root / "app" / "config.yaml").read_text())
                    if action.state == ActionState.SUCCEEDED and applied != 1:
                        result["lost"] = 1
                    if action.state == ActionState.ROLLED_BACK and (undone != 1 or value["features"]["fast_path"]):
                        result["lost"] = 1
            result["audit_ok"] = store.verify_audit().ok
        finally:
            store.close()
    finally:
        for proc in engines:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        _kill_service(root / "state")
        if not keep and not (result["lost"] or result["duplicated"] or result["unresolved"]):
            shutil.rmtree(root, ignore_errors=True)
        else:
            result["folder"] = str(root)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    rng = random.Random(args.seed)
    names = args.scenario or sorted(SCENARIOS)
    runs = []
    started = time.time()
    for i in range(args.runs):
        scenario = names[i % len(names)]
        run = one_run(scenario, rng)
        runs.append(run)
        if not args.json:
            print(json.dumps(run), flush=True)
        else:
            print(json.dumps(run), file=sys.stderr, flush=True)
    summary = {
        "runs": len(runs),
        "lost": sum(r["lost"] for r in runs),
        "duplicated": sum(r["duplicated"] for r in runs),
        "unresolved": sum(r["unresolved"] for r in runs),
        "killed_in": {s: sum(1 for r in runs if r.get("killed_in") == s)
                      for s in sorted({str(r.get("killed_in")) for r in runs})},
        "duration_s": round(time.time() - started, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
