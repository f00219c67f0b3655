"""Leader election over the store (autonomic.knowledge.lease): real stores on both back ends (a
SQLite file, a real PostgreSQL), several Store objects standing for several replicas, and a
fake monotonic clock per replica so every duration is exact."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from autonomic.config import load_config_data
from autonomic.errors import ConfigError, NotLeaderError, StoreError
from autonomic.knowledge import Store
from autonomic.knowledge.lease import LeaderElector, lease_key
from autonomic.model import Finding, FindingKind, Severity


class Mono:
    """A monotonic clock a test moves by hand."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def stores(store_url: str) -> Iterator[list[Store]]:
    """Three Store objects over one database: three replicas."""
    opened = [Store(store_url) for _ in range(3)]
    yield opened
    for s in opened:
        s.close()


def _elector(store: Store, name: str, clock: Mono) -> LeaderElector:
    return LeaderElector(store, identity=name, lease_s=15.0, renew_s=10.0, monotonic=clock)


def _finding(service: str = "web") -> Finding:
    return Finding(service=service, metric="up", kind=FindingKind.STATE, severity=Severity.CRITICAL,
                   cause="down", confidence=1.0, ts=1.0, summary="down")


def test_the_first_replica_takes_a_lease_nobody_holds_and_the_others_stand_by(stores: list[Store]) -> None:
    ca, cb = Mono(), Mono()
    a, b = _elector(stores[0], "a", ca), _elector(stores[1], "b", cb)
    assert a.attempt() and a.leading
    assert not b.attempt() and not b.leading
    assert b.describe() == "standby; the leader is a (epoch 1)"
    lease = stores[2].lease("engine")
    assert lease is not None and (lease.holder, lease.epoch) == ("a", 1)
    (event,) = [e for e in stores[2].audit_events() if e.kind == "lease.acquired"]
    assert event.actor == "a" and event.data["epoch"] == 1 and event.data["previous"] is None


def test_a_standby_waits_out_the_lease_on_its_own_clock_while_the_leader_renews(stores: list[Store]) -> None:
    ca, cb = Mono(), Mono()
    a, b = _elector(stores[0], "a", ca), _elector(stores[1], "b", cb)
    a.attempt()
    for _ in range(20):  # 100 s of renewals every 5 s: the record changes, b never takes it
        ca.t += 5
        cb.t += 5
        assert a.attempt()
        assert not b.attempt()
    assert stores[2].lease("engine").renewals == 20  # type: ignore[union-attr]
    # renewals are heartbeats: one audit event for the whole stretch
    assert [e.kind for e in stores[2].audit_events()].count("lease.acquired") == 1


def test_a_standby_takes_over_a_lease_left_unrenewed_for_lease_s_and_the_epoch_goes_up(
        stores: list[Store]) -> None:
    ca, cb = Mono(), Mono()
    a, b = _elector(stores[0], "a", ca), _elector(stores[1], "b", cb)
    a.attempt()
    assert not b.attempt()  # b first sees the record at cb = 100
    cb.t += 14.9
    assert not b.attempt(), "took the lease before it had gone unrenewed for lease_s"
    cb.t += 0.2
    assert b.attempt() and b.leading
    lease = stores[2].lease("engine")
    assert lease is not None and (lease.holder, lease.epoch, lease.renewals) == ("b", 2, 0)
    acquired = [e for e in stores[2].audit_events() if e.kind == "lease.acquired"]
    assert acquired[-1].data == {"epoch": 2, "previous": "a"}


def test_the_leader_stops_acting_after_renew_s_without_a_renewal_before_any_standby_may_take_over(
        stores: list[Store]) -> None:
    ca = Mono()
    a = _elector(stores[0], "a", ca)
    a.attempt()
    a.check()  # leading: no error
    ca.t += 9.9
    assert a.leading
    ca.t += 0.2
    assert not a.leading
    with pytest.raises(NotLeaderError, match="has not renewed it for 10 s"):
        a.check()
    assert a.attempt() and a.leading, "nobody took the lease: a late renewal makes it lead again"


def test_a_replica_that_lost_the_lease_can_neither_write_nor_lead_again(stores: list[Store]) -> None:
    """The fence: the old leader's store refuses every write, under the write lock, once another
    replica took the lease, even before the old leader has noticed; nothing is written."""
    ca, cb = Mono(), Mono()
    a, b = _elector(stores[0], "a", ca), _elector(stores[1], "b", cb)
    a.attempt()
    stores[0].record(_finding(), actor="engine", event="finding.new", subject="web")  # fenced, and passes
    b.attempt()
    cb.t += 16
    assert b.attempt()  # a was "frozen": it never renewed
    before = stores[2].audit_events()
    with pytest.raises(NotLeaderError, match="held by b, epoch 2"):
        stores[0].record(_finding(), actor="engine", event="finding.new", subject="web")
    with pytest.raises(NotLeaderError):
        stores[0].set_state("pause:global", {"by": "x"}, actor="engine", event="paused")
    assert stores[2].audit_events() == before and stores[2].get_state("pause:global") is None
    ca.t += 1  # a wakes: still inside its renew_s on its own clock, so it renews, and learns
    assert not a.attempt() and a.lost and not a.leading
    assert "lost the lease to b (epoch 2)" in a.describe()
    ca.t += 100
    assert not a.attempt(), "a replica that lost the lease led again in the same process"
    stores[1].record(_finding(), actor="engine", event="finding.new", subject="web")  # the new leader writes


def test_a_released_lease_is_taken_at_once_by_a_standby(stores: list[Store]) -> None:
    ca, cb = Mono(), Mono()
    a, b = _elector(stores[0], "a", ca), _elector(stores[1], "b", cb)
    a.attempt()
    assert not b.attempt()
    a.release()
    assert not a.leading
    assert b.attempt(), "a standby waited out a lease that had been given up"
    assert stores[2].lease("engine").epoch == 2  # type: ignore[union-attr]
    kinds = [e.kind for e in stores[2].audit_events()]
    assert kinds.count("lease.released") == 1 and kinds.count("lease.acquired") == 2


def test_of_two_standbys_that_saw_the_same_expired_lease_only_one_takes_it(stores: list[Store]) -> None:
    """Claims are write transactions, serialised by the store: the second finds the record changed."""
    ca, cb, cc = Mono(), Mono(), Mono()
    a = _elector(stores[0], "a", ca)
    a.attempt()
    b, c = _elector(stores[1], "b", cb), _elector(stores[2], "c", cc)
    assert not b.attempt() and not c.attempt()
    cb.t += 16
    cc.t += 16
    results: list[bool] = []
    barrier = threading.Barrier(2)

    def go(e: LeaderElector) -> None:
        barrier.wait()
        results.append(e.attempt())

    threads = [threading.Thread(target=go, args=(e,)) for e in (b, c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]
    lease = stores[0].lease("engine")
    assert lease is not None and lease.epoch == 2 and lease.holder in ("b", "c")


def test_a_store_that_does_not_answer_is_a_failed_round_not_a_crash(store_url: str) -> None:
    store = Store(store_url)
    clock = Mono()
    a = _elector(store, "a", clock)
    assert a.attempt()

    def refuse(*_args: object, **_kw: object) -> None:
        raise StoreError("store write failed: database is locked")

    store.claim_lease = refuse  # type: ignore[method-assign]
    clock.t += 5
    assert a.attempt(), "one failed renewal inside renew_s must not stop the leader"
    clock.t += 5.5
    assert not a.attempt() and not a.lost, "renewals failed for renew_s: it must stop acting, not give up"
    store.close()


def test_lease_timings_must_leave_the_leader_time_to_stop_first(store_url: str) -> None:
    store = Store(store_url)
    with pytest.raises(ValueError, match="renew_s < lease_s"):
        LeaderElector(store, identity="a", lease_s=10, renew_s=10)
    store.close()


def test_a_standby_started_with_another_config_than_the_leaders_is_told_once_and_says_so(
        stores: list[Store], caplog: pytest.LogCaptureFixture) -> None:
    a = LeaderElector(stores[0], identity="a", lease_s=15.0, renew_s=10.0, monotonic=Mono(), config="aaaa")
    b = LeaderElector(stores[1], identity="b", lease_s=15.0, renew_s=10.0, monotonic=Mono(), config="bbbb")
    same = LeaderElector(stores[2], identity="c", lease_s=15.0, renew_s=10.0, monotonic=Mono(), config="aaaa")
    assert a.attempt()
    with caplog.at_level(logging.WARNING, logger="autonomic.lease"):
        for _ in range(3):
            assert not b.attempt() and not same.attempt()
            assert a.attempt()
    (warning,) = [r.getMessage() for r in caplog.records if "another config" in r.getMessage()]
    assert "the leader a runs another config (fingerprint aaaa; this replica's: bbbb)" in warning
    assert b.config_differs and b.describe() == ("standby; the leader is a (epoch 1); it runs another config "
                                                 "(aaaa; this replica's: bbbb)")
    assert not same.config_differs and same.describe() == "standby; the leader is a (epoch 1)"
    lease = stores[2].lease("engine")
    assert lease is not None and lease.config == "aaaa"  # kept through the renewals


def test_the_lease_is_named_state_other_tools_can_read(stores: list[Store]) -> None:
    _elector(stores[0], "a", Mono()).attempt()
    value = stores[1].get_state(lease_key("engine"))
    assert value is not None and value["holder"] == "a" and value["epoch"] == 1


def test_leader_election_timings_out_of_order_are_refused_naming_the_field(tmp_path: Path) -> None:
    data = {"engine": {"state_dir": str(tmp_path), "leader_election": {"enabled": True, "lease_s": 10,
                                                                       "renew_s": 12}}}
    with pytest.raises(ConfigError) as err:
        load_config_data(data, source="autonomic.yaml", base_dir=tmp_path)
    (problem,) = err.value.problems
    assert problem.field == "engine.leader_election"
    assert "retry_s < renew_s < lease_s" in problem.message and "12" in problem.message


def test_leader_election_with_a_supervised_process_is_refused_naming_the_binding(tmp_path: Path) -> None:
    """A supervised process lives on one host; a replica elsewhere could not take it over."""
    data = {"engine": {"state_dir": str(tmp_path), "leader_election": {"enabled": True}},
            "services": [{"name": "web", "actuators": {"process": {"command": ["sleep", "60"]}}}]}
    with pytest.raises(ConfigError) as err:
        load_config_data(data, source="autonomic.yaml", base_dir=tmp_path)
    (problem,) = err.value.problems
    assert problem.field == "services[0].actuators.process" and "leader_election" in problem.message
    data["engine"]["leader_election"] = {"enabled": False}  # type: ignore[index]
    assert load_config_data(data, source="autonomic.yaml", base_dir=tmp_path).spec.services[0].name == "web"


def test_a_writer_frozen_inside_a_write_transaction_on_postgresql_is_cut_off_and_a_standby_takes_over(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A leader frozen between two statements of a write (a paused VM) holds the store's write
    lock. The server ends its transaction after the idle limit (1 s here, 5 s in production), so a
    standby's claim goes through instead of waiting for hours; the frozen write is rolled back and
    fails when it wakes, and the fence stops it writing again."""
    import autonomic.knowledge.store as store_module

    monkeypatch.setattr(store_module, "_PG_WRITE_IDLE_S", 1.0)
    a, b = Store(postgres_url), Store(postgres_url)
    try:
        ca, cb = Mono(), Mono()
        ea, eb = _elector(a, "a", ca), _elector(b, "b", cb)
        assert ea.attempt() and not eb.attempt()
        frozen, wake = threading.Event(), threading.Event()
        outcome: list[BaseException | None] = []

        def leader_write() -> None:
            try:
                with a.unit():
                    a.record(_finding(), actor="engine", event="finding.new", subject="web")
                    frozen.set()
                    wake.wait(30)  # the process is frozen here, the lock held
                    a.record(_finding(), actor="engine", event="finding.new", subject="web")
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        writer = threading.Thread(target=leader_write)
        writer.start()
        assert frozen.wait(10)
        cb.t += 16
        assert eb.attempt(), "the standby could not take the lease over from a leader frozen mid-write"
        wake.set()
        writer.join(30)
        assert len(outcome) == 1 and isinstance(outcome[0], StoreError)
        assert not [e for e in b.audit_events() if e.kind == "finding.new"], "the frozen write was committed"
        with pytest.raises(NotLeaderError):
            a.record(_finding(), actor="engine", event="finding.new", subject="web")
    finally:
        a.close()
        b.close()


def test_a_standby_slow_to_read_the_lease_counts_from_when_its_read_returned(
        stores: list[Store], monkeypatch: pytest.MonkeyPatch) -> None:
    """A standby starved during its read (a GC pause, a slow database) may get back a record the
    leader wrote long after the standby looked at its clock. It must count its lease_s from when
    it had the record in hand, not from before it asked (client-go: observedTime = now, after the
    Get): otherwise it takes over while the leader still leads on the leader's own clock."""
    ca, cb = Mono(), Mono()
    a, b = _elector(stores[0], "a", ca), _elector(stores[1], "b", cb)
    assert a.attempt()
    read = stores[1].lease

    def slow_read(name: str) -> object:
        for _ in range(6):  # b is stalled 30 s inside its read while a renews every 5 s
            ca.t += 5
            cb.t += 5
            assert a.attempt()
        return read(name)

    monkeypatch.setattr(stores[1], "lease", slow_read)
    assert not b.attempt()
    monkeypatch.setattr(stores[1], "lease", read)
    # a's last renewal started at 130 (both clocks); it leads until 140. It renews no more.
    for _ in range(4):
        ca.t += 2
        cb.t += 2
        b_leads = b.attempt()
        assert not (a.leading and b_leads), f"two leaders at t={cb.t}"
    cb.t += 10
    assert b.attempt(), "after lease_s from its read the standby takes over"


def test_a_store_that_stays_down_is_logged_once_not_every_round(store_url: str,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    store = Store(store_url)
    clock = Mono()
    b = _elector(store, "b", clock)
    real = store.lease

    def refuse(_name: str) -> None:
        raise StoreError("store read failed: connection refused")

    store.lease = refuse  # type: ignore[method-assign,assignment]
    with caplog.at_level("INFO", logger="autonomic.lease"):
        for _ in range(5):
            clock.t += 2
            b.attempt()
        store.lease = real  # type: ignore[method-assign]
        b.attempt()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("did not answer" in m for m in messages) == 1, messages
    assert sum("answers again" in m for m in messages) == 1, messages
    store.close()


def test_durations_run_on_a_clock_that_counts_time_suspended(store_url: str) -> None:
    """CLOCK_BOOTTIME on Linux: a leader suspended past its lease wakes knowing it."""
    import time as _time

    from autonomic.knowledge.lease import elapsed_clock

    if not hasattr(_time, "CLOCK_BOOTTIME"):
        pytest.skip("no CLOCK_BOOTTIME on this platform")
    assert abs(elapsed_clock() - _time.clock_gettime(_time.CLOCK_BOOTTIME)) < 0.5
    store = Store(store_url)
    assert LeaderElector(store, identity="a")._monotonic is elapsed_clock
    store.close()


def test_a_lease_held_under_this_replicas_identity_by_another_process_is_taken_over_as_from_any_holder(
        stores: list[Store]) -> None:
    """An ``identity`` given in the config (a pod's name) is the same for the process a restart
    replaced and for a second replica started with it by mistake. A lease held under it by another
    process, which did not give it up, was taken with ``took_over_from`` None, so Engine.start
    recovered at once actions whose calls that process may still have in flight (a frozen leader),
    without the takeover grace. Now that holder is named; its writes are still fenced by epoch."""
    ca, cb = Mono(), Mono()
    a, b = _elector(stores[0], "pod-0", ca), _elector(stores[1], "pod-0", cb)
    assert a.attempt()
    assert not b.attempt()
    cb.t += 15.1
    assert b.attempt() and b.took_over_from == "pod-0"
    with pytest.raises(NotLeaderError, match="epoch 1"):
        stores[0].audit("engine", "tick", "engine")
