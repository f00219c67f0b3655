"""Failover benchmark: kill or freeze the leading replica at random points during a real remediation.

Each run starts two real ``autonomic run`` replicas with leader election over one store (a SQLite
file both use, on this host), a small HTTP service of this program's own whose ``/health`` fails while its
config file (in a real git repository) says ``pool.size`` below 20, and breaks it with a commit of
its own. The leader sees the probe fail, decides, and acts through the ``config`` actuator (a
commit carrying the action's idempotency key, no reload; a pre-commit hook makes it take a second,
so that a kill can land while the actuator runs). At a random moment after the decision
(the action may be pending, running or verifying), the leader is killed (SIGKILL) or frozen
(SIGSTOP, then SIGKILL once the standby leads, as a supervisor would end it). The standby takes
the lease over and finishes the action from the store. Then:

* ``lost``: an approved decision with no action, or an action that ended "succeeded" whose commit
  is not in the repository;
* ``duplicated``: more than one commit carrying the action's idempotency key;
* ``misrecorded``: an action recorded failed or cancelled whose commit is there (not undone);
* ``unresolved``: the action not terminal (succeeded, failed, rolled back, escalated, cancelled)
  60 s after the kill, or the standby never leading;
* ``takeover_s``: from the kill (or freeze) to the standby's ``lease.acquired`` (audit time);
  with lease_s 3, renew_s 2 and retry_s 0.3 it cannot be less than about 2.7 s;
* ``inflight_after_takeover_s``: for a leader killed while its remedy's commit ran, how long
  that commit (orphaned, it goes on) ran on after the standby's ``lease.acquired``: what
  ``takeover_grace_s`` must cover; at most the call's length less (lease_s - renew_s);
* ``takeover_blocked``: freezes that landed inside a write transaction: on SQLite the frozen
  leader holds the file's write lock, so the standby takes over only once the frozen process is
  killed (after 20 s here, as a liveness probe would); PostgreSQL ends such a transaction after 5 s.

Usage: ``python benchmarks/failover.py --runs 20 --json [--seed 1] [--mode kill|freeze|both]
[--commit-s 1] [--grace 2] [--postgres]
[--skew-s 600]`` (``--commit-s`` longer than the takeover with ``--grace 0`` shows what
``takeover_grace_s`` is for: the new leader commits again beside the old leader's commit);
prints one JSON line (per-run lines on stderr). The store is a SQLite file per run (replicas on
one host), or with ``--postgres`` a new database per run on a PostgreSQL server the program
starts on loopback (what replicas on several hosts share; ``make sysdeps`` installs it). ``--skew-s``
runs the standby with its wall clock that far off this host's, as on another machine whose clock
is wrong (``takeover_s`` is then measured by this program's polls of the lease, to 0.05 s).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from autonomic.knowledge import Store
from autonomic.model import ActionState, Verdict

PATTERN = """
id: app-down-raise-pool
version: 1
description: the app fails its probe while its pool is too small; raise it (no reload needed)
match: {cause: down, kind: state}
action:
  type: config
  params: {op: set, key: pool.size, value: 20, reload: none}
prior_confidence: 0.9
rollback_safe: true
verify: {metric: probe_ok, min: 1, window_s: 10, delay_s: 2, min_samples: 2, tolerance: 0}
"""
LEASE = {"enabled": True, "lease_s": 3, "renew_s": 2, "retry_s": 0.3}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@localhost", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout


class App(ThreadingHTTPServer):
    """GET /health: 200 while config.yaml's pool.size is at least 20, else 500."""

    def __init__(self, config: Path) -> None:
        self.config = config

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                try:
                    size = int(yaml.safe_load(config.read_text())["pool"]["size"])
                except (OSError, ValueError, KeyError, TypeError):
                    size = 0
                code = 200 if size >= 20 else 500
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def _config(root: Path, name: str, url: str, app_port: int, repo: Path, grace_s: float) -> Path:
    spec = {
        "api": {"enabled": False},
        "engine": {"interval_s": 0.2, "state_dir": str(root / name), "host_metrics": False, "database": url,
                   "resolve_after_s": 30, "settle_s": 0, "time_scale": 0.1, "leader_election":
                       {**LEASE, "identity": name, "takeover_grace_s": grace_s}},
        "services": [{"name": "app", "probes": [{"type": "http", "url": f"http://127.0.0.1:{app_port}/health",
                                                 "timeout_s": 1}],
                      "thresholds": {"down_after": 2},
                      "actuators": {"config": {"repo": str(repo), "file": "config.yaml"}}}],
        "patterns": [str(root / "patterns")],
        "builtin_patterns": False,
        "policy": {"autonomy": "auto", "confidence_threshold": 0.5},
        "notifiers": [{"type": "jsonl", "path": str(root / f"{name}-notifications.jsonl")}],
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


SKEWED = Path(__file__).resolve().parents[1] / "tests" / "integration" / "skewed.py"


def _start(root: Path, name: str, config: Path, skew_s: float = 0.0) -> subprocess.Popen[bytes]:
    """``autonomic run``; with ``skew_s`` its wall clock is that far off this host's (skewed.py)."""
    log = (root / f"{name}.log").open("wb")
    command = [sys.executable, str(SKEWED), str(skew_s)] if skew_s else [sys.executable, "-m", "autonomic.cli"]
    return subprocess.Popen([*command, "run", "-c", str(config)], cwd=root,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def _wait(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    return None


def one_run(rng: random.Random, mode: str, commit_s: float, grace_s: float,
            database: Callable[[Path], str], skew_s: float = 0.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="autonomic-failover-") as d:
        root = Path(d)
        (root / "patterns").mkdir()
        (root / "patterns" / "app.yaml").write_text(PATTERN)
        repo = root / "app"
        repo.mkdir()
        (repo / "config.yaml").write_text(yaml.safe_dump({"pool": {"size": 30}}))
        _git(repo, "init", "-q")
        _git(repo, "add", "config.yaml")
        _git(repo, "commit", "-q", "-m", "initial")
        # the remedy's commit takes a second (a hook), so a kill can land while the actuator runs:
        # the commit then goes on without the engine that started it
        hook = repo / ".git" / "hooks" / "pre-commit"
        ends = root / "commit-ends"  # when each remedy commit's hook ended (this host's clock)
        hook.write_text(f"#!/bin/sh\nsleep {commit_s:g}\ndate +%s.%N >> {ends}\n")
        hook.chmod(0o755)
        app = App(repo / "config.yaml")
        threading.Thread(target=app.serve_forever, daemon=True).start()
        url = database(root)
        store = Store(url)
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            procs["a"] = _start(root, "a", _config(root, "a", url, app.server_address[1], repo, grace_s))
            if not _wait(lambda: (lease := store.lease("engine")) is not None and lease.holder == "a", 30):
                raise RuntimeError("replica a never led: " + (root / "a.log").read_text()[-2000:])
            procs["b"] = _start(root, "b", _config(root, "b", url, app.server_address[1], repo, grace_s), skew_s)
            time.sleep(2.0)  # b up and watching the lease
            (repo / "config.yaml").write_text(yaml.safe_dump({"pool": {"size": 10}}))  # the fault
            _git(repo, "commit", "-q", "--no-verify", "-am", "shrink the pool (the fault)")
            decision = _wait(lambda: next((x for x in store.decisions() if x.verdict == Verdict.APPROVED), None), 30)
            if decision is None:
                raise RuntimeError("no approved decision: " + (root / "a.log").read_text()[-2000:])
            time.sleep(rng.uniform(0.0, commit_s + 0.6))  # running about commit_s, then verifying about 1.2 s
            action = next(iter(store.actions(incident_id=decision.incident_id)), None)
            state_at_kill = action.state.value if action is not None else "pending"
            killed_at = time.time()
            if mode == "kill":
                procs["a"].kill()
            else:
                procs["a"].send_signal(signal.SIGSTOP)
            def b_leads() -> bool:
                lease = store.lease("engine")
                return lease is not None and lease.holder == "b"

            took = _wait(b_leads, 20 if mode == "freeze" else 60)
            seen_at = time.time()  # b seen leading (0.05 s polls): b's own audit times are off by skew_s
            blocked = mode == "freeze" and not took
            if mode == "freeze":
                # the supervisor ends it (its liveness probe fails; a frozen one that woke would find
                # its lease lost and exit 3). On SQLite a leader frozen inside a write transaction
                # holds the file's write lock: nothing can take over until it is gone (README).
                procs["a"].kill()
                procs["a"].send_signal(signal.SIGCONT)
                took = took or _wait(b_leads, 60)
            acquired = [e for e in store.audit_events() if e.kind == "lease.acquired" and e.actor == "b"]
            takeover = (None if not acquired or blocked
                        else seen_at - killed_at if skew_s else acquired[0].ts - killed_at)

            def ended() -> Any:
                acts = store.actions(incident_id=decision.incident_id)
                return acts if acts and all(a.state.terminal for a in acts) else None

            acts = _wait(ended, 60) or store.actions(incident_id=decision.incident_id)
            # a commit the killed leader started may still be running (its hook): let it land first
            _wait(lambda: not (repo / ".git" / "index.lock").exists(), commit_s + 10)
            # how long the old leader's call went on after the takeover: its commit's hook ending
            # after the kill, less lease.acquired (what takeover_grace_s must cover; None: no call
            # was in flight at the kill, or the standby's clock is skewed)
            finished = sorted(float(t) for t in ends.read_text().split()) if ends.exists() else []
            after_kill = [t for t in finished if t > killed_at]
            inflight = (after_kill[0] - acquired[0].ts if after_kill and acquired and not skew_s
                        and state_at_kill == "running" else None)
            log_text = _git(repo, "log", "--format=%B")  # every commit message: the key is in its trailer
            counts = {a.idempotency_key: log_text.count(f"Autonomic-Action: {a.idempotency_key}") for a in acts}
            keys = list(counts)
            lost = int(not acts) + sum(1 for a in acts
                                       if a.state == ActionState.SUCCEEDED and counts[a.idempotency_key] == 0)
            duplicated = sum(1 for k in keys if counts[k] > 1)
            # the record says it did not happen (failed, cancelled) while its commit is there, not undone
            misrecorded = sum(1 for a in acts if a.state in (ActionState.FAILED, ActionState.CANCELLED)
                              and counts[a.idempotency_key] > 0
                              and f"Autonomic-Undo: {a.idempotency_key}" not in log_text)
            unresolved = int(not took) + sum(1 for a in acts if not a.state.terminal)
            return {"mode": mode, "lost": lost, "duplicated": duplicated, "unresolved": unresolved,
                    "misrecorded": misrecorded, "takeover_blocked": blocked,
                    "killed_in": state_at_kill, "final": [a.state.value for a in acts],
                    "errors": [a.error[:160] for a in acts if a.error],
                    "takeover_s": None if takeover is None else round(takeover, 2),
                    "inflight_after_takeover_s": None if inflight is None else round(inflight, 2),
                    "audit_ok": store.verify_audit().ok}
        finally:
            for p in procs.values():
                if p.poll() is None:
                    os.kill(p.pid, signal.SIGCONT)
                    p.terminate()
                    try:
                        p.wait(10)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
            store.close()
            app.shutdown()
            app.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mode", choices=["kill", "freeze", "both"], default="both")
    parser.add_argument("--commit-s", type=float, default=1.0, help="how long the remedy's commit takes")
    parser.add_argument("--grace", type=float, default=2.0, help="leader_election.takeover_grace_s")
    parser.add_argument("--postgres", action="store_true",
                        help="the store on a PostgreSQL server this program starts (a new database per run); "
                             "default: a SQLite file per run")
    parser.add_argument("--skew-s", type=float, default=0.0,
                        help="the standby's wall clock this far ahead (negative: behind) of this host's")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    results = []
    started = time.monotonic()
    server = None
    if args.postgres:  # the same throwaway server the tests use (initdb on /dev/shm, loopback only)
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
        from servers import start_postgres  # type: ignore[import-not-found]

        server = start_postgres()
    names = iter(range(10**6))

    def database(root: Path) -> str:
        if server is None:
            return f"sqlite:///{root / 'store.db'}"
        return str(server.create_database(f"failover_{next(names)}"))

    try:
        for i in range(args.runs):
            mode = args.mode if args.mode != "both" else ("kill", "freeze")[i % 2]
            r = one_run(rng, mode, args.commit_s, args.grace, database, args.skew_s)
            print(json.dumps(r), file=sys.stderr, flush=True)
            results.append(r)
    finally:
        if server is not None:
            server.stop()
    takeovers = [r["takeover_s"] for r in results if r["takeover_s"] is not None]
    inflight = [r["inflight_after_takeover_s"] for r in results if r["inflight_after_takeover_s"] is not None]
    killed_in: dict[str, int] = {}
    for r in results:
        killed_in[r["killed_in"]] = killed_in.get(r["killed_in"], 0) + 1
    summary = {
        "runs": len(results),
        "store": "postgresql" if args.postgres else "sqlite file",
        "commit_s": args.commit_s,
        "takeover_grace_s": args.grace,
        "standby_skew_s": args.skew_s,
        "lost": sum(r["lost"] for r in results),
        "duplicated": sum(r["duplicated"] for r in results),
        "unresolved": sum(r["unresolved"] for r in results),
        "misrecorded": sum(r["misrecorded"] for r in results),
        "takeover_blocked": sum(r["takeover_blocked"] for r in results),
        "audit_ok": all(r["audit_ok"] for r in results),
        "killed_in": killed_in,
        "finals": sorted({f for r in results for f in r["final"]}),
        "takeover_p50_s": round(float(np.percentile(takeovers, 50)), 2) if takeovers else None,
        "takeover_max_s": round(max(takeovers), 2) if takeovers else None,
        # what takeover_grace_s must cover: the old leader's call going on after the takeover
        "inflight_after_takeover_max_s": max(inflight) if inflight else None,
        "duration_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary) if args.json else summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
