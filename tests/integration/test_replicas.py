"""Two real ``autonomic run`` processes over one real PostgreSQL with leader election on: one
leads, the other stands by (its /readyz says so; an alert sent to it is ingested by the leader),
the standby takes over when the
leader is frozen (SIGSTOP: a stopped VM, a long pause), and the old leader, woken, finds the
lease lost and exits without writing anything."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import NotifySocket, PartitionProxy, free_port, wait_for

from autonomic.knowledge import Store
from autonomic.oversight.auth import create_token

ALERT = {"version": "4", "status": "firing", "receiver": "autonomic", "groupKey": "{}:{}", "groupLabels": {},
         "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "truncatedAlerts": 0,
         "alerts": [{"status": "firing", "labels": {"alertname": "Down", "service": "web"}, "annotations": {},
                     "startsAt": "2026-11-30T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                     "generatorURL": "", "fingerprint": "abc"}]}


class Replica:
    """``autonomic run`` with leader election over ``url``; ``extra`` is YAML appended to its config
    (the top-level sections after ``engine``), ``engine`` more ``engine:`` settings, and ``skew_s``
    sets its wall clock that far off the host's (see skewed.py); ``election`` adds
    ``leader_election`` settings and ``lease`` replaces its timings; ``hang`` (a block file and a
    calls file) makes its HTTP actuator's apply hang while the block file exists (see hang.py);
    ``env``: more environment variables."""

    def __init__(self, tmp_path: Path, name: str, url: str, *, extra: str = "", engine: str = "",
                 election: str = "", lease: str = "lease_s: 3, renew_s: 2", skew_s: float = 0.0,
                 hang: tuple[Path, Path] | None = None, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = free_port()
        home = tmp_path / name
        home.mkdir()
        config = home / "autonomic.yaml"
        config.write_text(
            f"engine:\n  database: '{url}'\n  state_dir: {home / 'state'}\n  host_metrics: false\n"
            f"  interval_s: 0.2\n{engine}"
            f"  leader_election: {{enabled: true, {lease}, retry_s: 0.3, identity: {name}{election}}}\n"
            + (extra or "services:\n  - name: web\n")
            + f"api: {{port: {self.port}}}\n")
        self.log = home / "engine.log"
        with self.log.open("wb") as out:
            command = ([sys.executable, str(Path(__file__).with_name("skewed.py")), str(skew_s)] if skew_s
                       else [sys.executable, str(Path(__file__).with_name("hang.py")), *map(str, hang)] if hang
                       else [sys.executable, "-m", "autonomic.cli"])
            self.proc = subprocess.Popen([*command, "run", "-c", str(config)],
                                         cwd=home, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, "COLUMNS": "500", **(env or {})})

    def probe(self, path: str = "/readyz") -> tuple[int, dict[str, Any]] | None:
        """What ``path`` (/readyz, /healthz) answers (status code, body), or None when it does not answer."""
        try:
            r = httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2)
        except httpx.HTTPError:
            return None
        return r.status_code, r.json()

    def ready(self) -> tuple[int, dict[str, Any]] | None:
        return self.probe("/readyz")

    def status(self) -> str | None:
        """What /readyz says it is ("ok": leading, "standby", ...), or None when it does not answer."""
        ready = self.ready()
        return None if ready is None else ready[1].get("status")

    def wait_status(self, status: str, timeout: float) -> None:
        """Wait until /readyz says ``status`` ("ok": it leads; "standby")."""
        wait_for(lambda: self.status() == status or None, timeout=timeout, what=f"{self.name} {status}")

    def exit_code(self, timeout: float) -> int:
        """Its exit code, once it has exited; a test failure with its log when it has not within ``timeout`` s."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {timeout:g} s; its log:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()


def test_under_systemd_the_leader_and_a_standby_each_say_ready_and_who_leads(replicas: Any, tmp_path: Path) -> None:
    """Type=notify: the leader says READY=1 after its first tick, a standby after its first lease
    round (it never ticks while it stands by: waiting for its first tick, systemd would have
    failed its start); each STATUS says which it is, and a takeover changes the standby's."""
    a_sd, b_sd = NotifySocket(tmp_path / "a.notify"), NotifySocket(tmp_path / "b.notify")
    try:
        a = replicas("replica-a", env={"NOTIFY_SOCKET": a_sd.variable})
        assert a_sd.wait("READY=1") == "READY=1\nSTATUS=leading: 0 open incidents"
        replicas("replica-b", env={"NOTIFY_SOCKET": b_sd.variable})
        assert b_sd.wait("READY=1") == "READY=1\nSTATUS=standby; the leader is replica-a (epoch 1)"
        a.proc.send_signal(signal.SIGTERM)
        a_sd.wait("STOPPING=1")
        assert b_sd.wait("STATUS=leading") == "STATUS=leading: 0 open incidents"
        assert a.exit_code(30) == 0, a.log.read_text()
    finally:
        a_sd.close()
        b_sd.close()


def test_under_systemd_a_leader_that_lost_its_lease_says_stopping_and_why_before_it_exits_3(
        replicas: Any, tmp_path: Path) -> None:
    """The leader is frozen (SIGSTOP) until the standby takes over; woken, it finds the lease lost
    and exits 3. Before, systemd was told nothing of that stop (STOPPING=1 came only from SIGTERM):
    the unit read as running, its STATUS "leading", while it stopped its services and exited. Now
    STOPPING=1 comes first, with a STATUS saying the lease was lost, to whom, and that it exits."""
    a_sd = NotifySocket(tmp_path / "a.notify")
    try:
        a = replicas("replica-a", env={"NOTIFY_SOCKET": a_sd.variable})
        assert a_sd.wait("READY=1") == "READY=1\nSTATUS=leading: 0 open incidents"
        b = replicas("replica-b")
        b.wait_status("standby", timeout=30)
        os.kill(a.proc.pid, signal.SIGSTOP)
        b.wait_status("ok", timeout=30)
        os.kill(a.proc.pid, signal.SIGCONT)
        assert a.exit_code(30) == 3, a.log.read_text()
        stopping = a_sd.wait("STOPPING=1", timeout=5)
        assert stopping == ("STOPPING=1\nSTATUS=stopping: this replica (replica-a) lost the lease to replica-b "
                            "(epoch 2); it exits (code 3) to be restarted as a standby"), a_sd.messages
    finally:
        a_sd.close()


def leader_gauge(replica: Replica) -> float:
    text = httpx.get(f"http://127.0.0.1:{replica.port}/metrics", timeout=5).text
    (line,) = [ln for ln in text.splitlines() if ln.startswith("autonomic_leader ")]
    return float(line.split()[1])


@pytest.fixture
def replicas(tmp_path: Path, postgres_url: str) -> Any:
    started: list[Replica] = []

    def start(name: str, url: str | None = None, **kwargs: Any) -> Replica:
        r = Replica(tmp_path, name, url or postgres_url, **kwargs)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def test_a_standby_takes_over_from_a_frozen_leader_which_then_exits_without_writing(
        replicas: Any, postgres_url: str) -> None:
    a = replicas("replica-a")
    a.wait_status("ok", timeout=30)
    b = replicas("replica-b")
    standby = wait_for(lambda: (s := b.ready()) is not None and s[1].get("status") == "standby" and s or None,
                       timeout=30, what="replica-b standing by")
    # ready (it serves the API from the store), and says it stands by and who leads
    assert standby[0] == 200 and "the leader is replica-a (epoch 1)" in standby[1]["reason"]
    # an alert sent to the standby is stored, and the leader ingests it
    tokens = Store(postgres_url)
    try:
        token = create_token(tokens, "alertmanager", "operator")
    finally:
        tokens.close()
    r = httpx.post(f"http://127.0.0.1:{b.port}/api/v1/alerts", json=ALERT, timeout=5,
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 202 and r.json() == {"accepted": 1}
    check = Store(postgres_url)
    try:
        wait_for(lambda: [i for i in check.incidents(service="web") if i.kind == "alert"] or None,
                 timeout=30, what="the leader ingesting the alert the standby took in")
        # the inbox entry is removed once all of it is ingested: a write of its own, after the incident's
        wait_for(lambda: check.states("inbox:") == {}, timeout=30, what="the ingested inbox entry removed")
    finally:
        check.close()
    assert [leader_gauge(r) for r in (a, b)] == [1.0, 0.0]
    # the dashboard's overview, on either replica, says who leads and since when, and its own part
    views = {r.name: httpx.get(f"http://127.0.0.1:{r.port}/api/v1/overview", timeout=5,
                               headers={"Authorization": f"Bearer {token}"}).json()["leadership"] for r in (a, b)}
    for name, role in (("replica-a", "leader"), ("replica-b", "standby")):
        view = views[name]
        assert (view["leader"], view["epoch"], view["this_replica"], view["role"]) == ("replica-a", 1, name, role)
        assert view["since"] is not None and 0 <= view["renewed_s_ago"] < 3 and not view["config_differs"]

    os.kill(a.proc.pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    b.wait_status("ok", timeout=30)
    took = time.monotonic() - frozen_at
    # the last renewal came up to retry_s (0.3 s) before the freeze; lease_s (3 s) counts from it
    assert took >= 2.6, f"took the lease over {took:.1f} s after the leader froze, before lease_s"
    store = Store(postgres_url)
    try:
        lease = store.lease("engine")
        assert lease is not None and (lease.holder, lease.epoch) == ("replica-b", 2)
        events = store.audit_events()
        (takeover,) = [e for e in events if e.kind == "lease.acquired" and e.actor == "replica-b"]
        assert takeover.data == {"epoch": 2, "previous": "replica-a"}

        os.kill(a.proc.pid, signal.SIGCONT)
        assert a.exit_code(30) == 3, a.log.read_text()
        text = a.log.read_text()
        assert "lost the lease to replica-b (epoch 2)" in text, text
        after = [e for e in store.audit_events(since_seq=takeover.seq) if e.actor != "replica-b"]
        started = [e for e in after if e.kind == "engine.started"]
        assert [e.data["replica"] for e in started] == ["replica-b"]
        assert not [e for e in after if e.kind == "engine.stopped"], "the deposed leader wrote after the takeover"
        assert b.status() == "ok" and leader_gauge(b) == 1.0

        b.proc.send_signal(signal.SIGTERM)
        assert b.exit_code(30) == 0, b.log.read_text()
        released = store.lease("engine")
        assert released is not None and released.holder is None and released.epoch == 2
        assert [e.kind for e in store.audit_events(since_seq=takeover.seq)][-2:] == ["engine.stopped",
                                                                                     "lease.released"]
        assert store.verify_audit().ok
    finally:
        store.close()


APPROVE = ("services:\n  - name: web\n    actuators: {http: {base_url: 'http://127.0.0.1:9'}}\n"
           "    fallback: {type: http, params: {method: POST, path: /restart}}\n"
           "policy: {autonomy: approve}\n")


def test_a_request_for_approval_outlives_a_takeover_by_a_replica_whose_clock_is_twenty_minutes_ahead(
        replicas: Any, postgres_url: str) -> None:
    """The approval was asked for by the old leader's clock; the new leader, whose machine's clock
    is 20 minutes ahead, must not take the request (approval_ttl_s 10 minutes) for expired: times
    in the store are the database server's, whichever replica wrote them."""
    a = replicas("replica-a", extra=APPROVE, engine="  approval_ttl_s: 600\n")
    a.wait_status("ok", timeout=30)
    b = replicas("replica-b", extra=APPROVE, engine="  approval_ttl_s: 600\n", skew_s=1200)
    b.wait_status("standby", timeout=30)
    store = Store(postgres_url)
    try:
        token = create_token(store, "alice", "operator")
        headers = {"Authorization": f"Bearer {token}"}
        r = httpx.post(f"http://127.0.0.1:{a.port}/api/v1/alerts", json=ALERT, timeout=5, headers=headers)
        assert r.status_code == 202
        (waiting,) = wait_for(lambda: [i for i in store.incidents(service="web")
                                       if i.state == "awaiting_approval"] or None,
                              timeout=30, what="the leader asking a person to approve")
        # the skewed standby watched the lease for longer than lease_s and left it alone: the lease
        # compares no wall clocks
        lease = store.lease("engine")
        assert lease is not None and (lease.holder, lease.epoch) == ("replica-a", 1)
        a.proc.kill()
        a.proc.wait()
        b.wait_status("ok", timeout=30)
        r = httpx.post(f"http://127.0.0.1:{b.port}/api/v1/approvals/{waiting.id}/approve", timeout=5,
                       headers=headers, json={"comment": "go"})
        assert r.status_code == 200, r.text
        wait_for(lambda: [d for d in store.decisions(waiting.id) if d.verdict == "approved"] or None,
                 timeout=30, what="the new leader acting on the approval")
        assert not [e for e in store.audit_events() if e.kind == "approval.expired"]
        # the skewed replica's audit events are stamped by the server's clock too (they were 20
        # minutes ahead), so the log's times grow with its sequence across the takeover
        now = store.server_time()
        events = store.audit_events()
        assert [e for e in events if e.actor == "replica-b" or e.data.get("replica") == "replica-b"]
        assert all(now - 300 <= e.ts <= now + 1 for e in events), [(e.kind, e.actor, e.ts - now) for e in events]
        assert [e.ts for e in events] == sorted(e.ts for e in events)
    finally:
        store.close()


def test_an_approval_through_a_replica_on_another_ttl_is_judged_by_the_expiry_the_leader_recorded(
        replicas: Any, postgres_url: str) -> None:
    """Mid-rollout the replicas run different configs: the leader asks under approval_ttl_s 600,
    the standby's config says 2 s. A person approves through the standby 3 s after the request.
    Before, the standby judged by its own 2 s and answered 409 "too late, nothing will be done",
    though the leader would have acted on it; now every replica judges by the expiry the leader
    recorded with the request: 200, and the leader acts on it. Real processes over PostgreSQL."""
    a = replicas("replica-a", extra=APPROVE, engine="  approval_ttl_s: 600\n")
    a.wait_status("ok", timeout=30)
    b = replicas("replica-b", extra=APPROVE, engine="  approval_ttl_s: 2\n")
    b.wait_status("standby", timeout=30)
    store = Store(postgres_url)
    try:
        token = create_token(store, "alice", "operator")
        headers = {"Authorization": f"Bearer {token}"}
        r = httpx.post(f"http://127.0.0.1:{a.port}/api/v1/alerts", json=ALERT, timeout=5, headers=headers)
        assert r.status_code == 202
        (waiting,) = wait_for(lambda: [i for i in store.incidents(service="web")
                                       if i.state == "awaiting_approval"] or None,
                              timeout=30, what="the leader asking a person to approve")
        asked = store.decisions(waiting.id)[-1]
        time.sleep(max(0.0, asked.ts + 3 - store.server_time()))
        r = httpx.post(f"http://127.0.0.1:{b.port}/api/v1/approvals/{waiting.id}/approve", timeout=5,
                       headers=headers, json={"comment": "go"})
        assert r.status_code == 200, r.text
        wait_for(lambda: [d for d in store.decisions(waiting.id) if d.verdict == "approved"] or None,
                 timeout=30, what="the leader acting on the approval")
        assert not [e for e in store.audit_events() if e.kind in ("approval.late", "approval.expired")]
        assert asked.expires_at is not None and abs(asked.expires_at - asked.ts - 600) < 1e-6
    finally:
        store.close()


def runbook_config(marks: Path, seconds: float) -> str:
    """A service whose remedy (a person approves it) is a runbook that notes its start (with the
    action's key) in ``marks``, takes ``seconds``, then notes its end."""
    script = (f"import os, time; f = open({str(marks)!r}, 'a'); f.write('start ' + os.environ['AUTONOMIC_ACTION_KEY']"
              f" + '\\n'); f.flush(); time.sleep({seconds}); f.write('end\\n')")
    return ("services:\n  - name: web\n    actuators: {shell: {}}\n"
            f"    fallback: {{type: shell, params: {{argv: {json.dumps([sys.executable, '-c', script])}, "
            "timeout_s: 60}}\n"
            "policy: {autonomy: approve}\n")


def leader_and_standby(replicas: Any, config: dict[str, Any], **leader: Any) -> tuple[Replica, Replica]:
    """replica-a leading and replica-b standing by, both with ``config`` (Replica's keywords), a
    with ``leader`` too."""
    a = replicas("replica-a", **config, **leader)
    a.wait_status("ok", timeout=30)
    b = replicas("replica-b", **config)
    b.wait_status("standby", timeout=30)
    return a, b


def alert_and_approve(store: Store, via: Replica) -> None:
    """Send the alert to ``via``, wait for the leader to ask a person, and approve through ``via``."""
    token = create_token(store, "alice", "operator")
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.post(f"http://127.0.0.1:{via.port}/api/v1/alerts", json=ALERT, timeout=5,
                      headers=headers).status_code == 202
    (waiting,) = wait_for(lambda: [i for i in store.incidents(service="web")
                                   if i.state == "awaiting_approval"] or None,
                          timeout=30, what="the leader asking a person to approve")
    r = httpx.post(f"http://127.0.0.1:{via.port}/api/v1/approvals/{waiting.id}/approve", timeout=5,
                   headers=headers, json={"comment": "go"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("cut", ["packets_lost", "connections_killed"])
def test_a_leader_cut_off_from_postgresql_mid_action_is_fenced_and_its_standby_finishes_without_running_it_again(
        replicas: Any, postgres_url: str, postgres_server: Any, tmp_path: Path, cut: str) -> None:
    """The leader's runbook is running when the network between it and the database goes
    (``packets_lost``: nothing arrives, connections hang; ``connections_killed``: its backends are
    ended with pg_terminate_backend and new connections refused), for longer than its lease. The
    standby takes over and leaves the action alone for takeover_grace_s; the runbook, not fenced
    once started, ends; the deposed leader writes nothing of it (its journal write is fenced when
    the network is back) and exits 3; the runbook ran once and the action went to a person (a
    runbook cannot say whether it ran)."""
    marks = tmp_path / "runbook.log"
    proxy = PartitionProxy(("127.0.0.1", postgres_server.port))
    try:
        config = {"extra": runbook_config(marks, 6), "election": ", takeover_grace_s: 10"}
        a, b = leader_and_standby(replicas, config, url=proxy.url(postgres_url) + "?application_name=replica-a")
        store = Store(postgres_url)
        try:
            alert_and_approve(store, via=b)
            wait_for(lambda: marks.exists() and "start" in marks.read_text() or None, timeout=30,
                     what="the leader's runbook starting")
            if cut == "packets_lost":
                proxy.hold()
            else:
                proxy.refuse()
                with postgres_server.connect() as conn:
                    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE application_name = 'replica-a'")
            b.wait_status("ok", timeout=30)
            wait_for(lambda: "end" in marks.read_text() or None, timeout=30, what="the runbook ending")
            (action,) = wait_for(lambda: [x for x in store.actions() if x.state.terminal] or None, timeout=60,
                                 what="the new leader settling the action")
            assert action.state == "escalated" and "cannot tell if it ran" in (action.error or "")
            assert "apply" not in [step.name for step in action.steps], "the deposed leader's result was written"

            proxy.heal()
            assert a.exit_code(60) == 3, a.log.read_text()
            assert "lost the lease to replica-b (epoch 2)" in a.log.read_text()
            assert store.get(type(action), action.id) == action, "the deposed leader wrote after the takeover"
            assert [line.split()[0] for line in marks.read_text().splitlines()] == ["start", "end"]
            assert store.verify_audit().ok
        finally:
            store.close()
    finally:
        proxy.close()


def test_a_leader_stopped_with_sigterm_hands_the_lease_over_at_once_even_with_a_dashboard_streaming(
        replicas: Any, postgres_url: str) -> None:
    """Kubernetes sends SIGTERM to a pod it deletes (a rolling update, a drain). The leader gives
    the lease up as it stops, so the standby takes over at its next round, without waiting out
    lease_s (30 s here) or takeover_grace_s; a dashboard streaming events from the leader does not
    hold the stop up past the pod's grace period."""
    a = replicas("replica-a", lease="lease_s: 30, renew_s: 20")
    a.wait_status("ok", timeout=30)
    b = replicas("replica-b", lease="lease_s: 30, renew_s: 20")
    b.wait_status("standby", timeout=30)
    store = Store(postgres_url)
    try:
        token = create_token(store, "alice", "viewer")
        streaming = threading.Event()

        def watch() -> None:
            with contextlib.suppress(httpx.HTTPError), httpx.stream(
                    "GET", f"http://127.0.0.1:{a.port}/api/v1/events", timeout=60,
                    headers={"Authorization": f"Bearer {token}"}) as r:
                streaming.set()
                for _ in r.iter_bytes():
                    pass

        threading.Thread(target=watch, daemon=True).start()
        assert streaming.wait(10)
        a.proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        assert a.exit_code(30) == 0, a.log.read_text()
        stopped = time.monotonic() - sent
        b.wait_status("ok", timeout=20)
        took = time.monotonic() - sent
        kinds = [(e.kind, e.actor, e.data) for e in store.audit_events() if e.kind.startswith("lease.")]
        assert kinds[-2:] == [("lease.released", "replica-a", {"epoch": 1}),
                              ("lease.acquired", "replica-b", {"epoch": 2, "previous": None})]
        print(f"SIGTERM to exit {stopped:.2f} s, to the standby leading {took:.2f} s")
        assert "a call of its may still be in flight" not in b.log.read_text()  # no takeover grace
    finally:
        store.close()


def test_a_leader_whose_loop_hangs_in_an_actuator_call_stops_renewing_fails_healthz_and_once_woken_cannot_act(
        replicas: Any, postgres_url: str, tmp_path: Path) -> None:
    """The leader's HTTP actuator call never returns (a driver without a timeout). Its lease thread
    went on renewing, so the standby never took over, and /healthz said ok, so nothing restarted
    it: the engine stood still for good. Now the loop counts as stuck once a step has lasted
    longer than stuck_after_s: the leader stops renewing (the standby takes over after lease_s and
    settles the action after takeover_grace_s), its /healthz fails naming the call, and a log line
    says what it is stuck in. When the call returns at last, the deposed leader writes nothing
    (fenced), calls no actuator again, and exits 3."""
    block, calls = tmp_path / "block", tmp_path / "calls"
    block.touch()
    config = {"extra": APPROVE, "election": ", takeover_grace_s: 2"}
    a, b = leader_and_standby(replicas, config, engine="  stuck_after_s: 3\n", hang=(block, calls))
    store = Store(postgres_url)
    try:
        alert_and_approve(store, via=b)
        wait_for(lambda: calls.exists() or None, timeout=30, what="the leader's actuator call starting")
        hung_at = time.monotonic()
        b.wait_status("ok", timeout=30)
        took = time.monotonic() - hung_at
        # stuck_after_s (3 s), then lease_s (3 s) without a renewal
        assert took >= 4.5, f"the standby took over {took:.1f} s after the call hung"
        lease = store.lease("engine")
        assert lease is not None and (lease.holder, lease.epoch) == ("replica-b", 2)
        code, body = wait_for(lambda: (h := a.probe("/healthz")) is not None and h[0] == 503 and h or None, timeout=10,
                              what="replica-a's /healthz failing")
        assert body["status"] == "stuck" and "stuck in http apply of action" in body["reason"], body
        assert "on web, attempt 1 (an actuator call)" in body["reason"], body
        assert a.ready() is not None and a.ready()[0] == 200  # still serves the API: readiness is not liveness
        text = a.log.read_text()
        assert "stops renewing its lease" in text and "stuck in http apply of action" in text, text
        (action,) = wait_for(lambda: [x for x in store.actions() if x.state.terminal] or None, timeout=30,
                             what="the new leader settling the action after takeover_grace_s")
        assert action.state == "escalated" and "cannot tell if it ran" in (action.error or "")
        assert "a call of its may still be in flight" in b.log.read_text()

        block.unlink()  # the call returns at last
        assert a.exit_code(30) == 3, a.log.read_text()
        text = a.log.read_text()
        assert "lost the lease to replica-b (epoch 2)" in text, text
        assert store.get(type(action), action.id) == action, "the deposed leader wrote after the takeover"
        assert len(calls.read_text().splitlines()) == 1, "the deposed leader called the actuator again"
        assert store.verify_audit().ok
    finally:
        store.close()
