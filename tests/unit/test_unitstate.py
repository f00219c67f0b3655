"""The unit-state source's pure part: what a unit's state, as systemd, Docker or Kubernetes says it,
counts as (``up``, ``available_ratio``, ``rollout_complete``), which binding's unit is read, and what a
service whose unit is read may report. The reads themselves (over D-Bus, the Docker Engine API, the
Kubernetes API) are tested end to end against the stand-ins in tests/integration."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from autonomic.config import ServiceSpec
from autonomic.errors import RetryableActuatorError, SourceError
from autonomic.model import ActionSpec, Pattern, PatternMatch, VerifySpec
from autonomic.monitor.unitstate import (
    UnitStateSource,
    docker_readings,
    kubernetes_readings,
    systemd_readings,
    unit_kind,
)
from autonomic.plan.diagnose import cannot_run
from autonomic.plan.patterns import PatternYaml


@pytest.mark.parametrize(("active", "sub", "up"), [
    ("active", "running", 1.0),
    ("reloading", "reload", 1.0),
    ("activating", "start", 1.0),  # a restart's start part: not down
    ("deactivating", "stop-sigterm", 1.0),  # a restart's stop part
    ("failed", "failed", 0.0),
    ("activating", "auto-restart", 0.0),  # died, systemd waits RestartSec= to start it again
])
def test_a_systemd_unit_is_up_while_it_runs_or_is_being_restarted_and_down_once_failed(
        active: str, sub: str, up: float) -> None:
    assert systemd_readings(active, sub) == {"up": up, "unit_stopped": 0.0}


def test_a_systemd_unit_stopped_on_purpose_has_no_up_but_says_it_was_stopped() -> None:
    assert systemd_readings("inactive", "dead") == {"unit_stopped": 1.0}


def test_a_systemd_unit_in_a_state_it_cannot_tell_gives_nothing() -> None:
    assert systemd_readings("maintenance", "dead") == {}


@pytest.mark.parametrize(("state", "expected"), [
    ({"Status": "running", "Running": True}, {"up": 1.0, "unit_stopped": 0.0}),
    ({"Status": "exited", "Running": False, "ExitCode": 137}, {"up": 0.0, "unit_stopped": 0.0}),
    ({"Status": "dead", "Running": False}, {"up": 0.0, "unit_stopped": 0.0}),
    ({"Status": "created", "Running": False}, {"up": 0.0, "unit_stopped": 0.0}),
    ({"Status": "restarting", "Running": True, "Restarting": True},  # its restart policy's back-off
     {"up": 0.0, "unit_stopped": 0.0}),
    ({"Status": "paused", "Running": True, "Paused": True}, {"unit_stopped": 1.0}),  # docker pause: on purpose
    # docker stop: the actuator found the engine's stop event since it started
    ({"Status": "exited", "Running": False, "ExitCode": 0, "stopped_by_request": True}, {"unit_stopped": 1.0}),
    ({"Status": "exited", "Running": False, "ExitCode": 0, "stopped_by_request": False},
     {"up": 0.0, "unit_stopped": 0.0}),
])
def test_a_container_is_up_while_it_runs_and_down_once_exited_or_restarting_by_its_policy(
        state: dict[str, Any], expected: dict[str, float]) -> None:
    assert docker_readings(state) == expected


def _workload(**kw: Any) -> dict[str, Any]:
    return {"desired": 2, "replicas": 2, "updated": 2, "ready": 2, "available": 2, "generation": 3,
            "observed_generation": 3, **kw}


def test_a_workload_with_every_replica_available_and_rolled_out_is_up_and_complete() -> None:
    assert kubernetes_readings(_workload()) == {"up": 1.0, "unit_stopped": 0.0, "available_ratio": 1.0,
                                                "rollout_complete": 1.0}


def test_a_workload_with_no_replica_available_of_those_desired_is_down() -> None:
    assert kubernetes_readings(_workload(available=0, ready=0)) == {
        "up": 0.0, "unit_stopped": 0.0, "available_ratio": 0.0, "rollout_complete": 0.0}


def test_a_partly_available_workload_is_up_with_the_share_available() -> None:
    assert kubernetes_readings(_workload(desired=4, replicas=4, updated=4, available=1)) == {
        "up": 1.0, "unit_stopped": 0.0, "available_ratio": 0.25, "rollout_complete": 0.0}


@pytest.mark.parametrize("kw", [
    {"observed_generation": 2},  # the controller has not seen the new template yet
    {"updated": 1},  # a new replica still to come
    {"replicas": 3},  # an old replica still there beside the two new ones
    {"available": 1},  # a new replica not available yet
])
def test_a_rollout_in_progress_is_not_complete(kw: dict[str, Any]) -> None:
    assert kubernetes_readings(_workload(**kw))["rollout_complete"] == 0.0


def test_a_surge_counts_at_most_every_replica_available() -> None:
    assert kubernetes_readings(_workload(available=3, replicas=3))["available_ratio"] == 1.0


def test_a_workload_scaled_to_zero_on_purpose_has_no_up_but_says_it_was_stopped() -> None:
    assert kubernetes_readings(_workload(desired=0, replicas=0, updated=0, available=0)) == {"unit_stopped": 1.0}


def test_the_unit_read_is_the_first_systemd_docker_or_kubernetes_binding_and_none_beside_a_process() -> None:
    """A supervised process samples its own ``up``: a unit's beside it could say otherwise at once."""
    assert unit_kind(["shell", "docker", "systemd"]) == "docker"
    assert unit_kind(["kubernetes"]) == "kubernetes"
    assert unit_kind(["systemd", "process"]) is None
    assert unit_kind(["shell", "config"]) is None


def test_the_source_samples_what_the_read_state_counts_as() -> None:
    src = UnitStateSource("web", "systemd", lambda: {"active_state": "failed", "sub_state": "failed"}, 10.0)
    samples = src.collect(5.0)
    assert src.name == "unit:web"
    assert [(s.service, s.metric, s.ts, s.value) for s in samples] == [
        ("web", "up", 5.0, 0.0), ("web", "unit_stopped", 5.0, 0.0)]


def test_a_unit_that_cannot_be_read_gives_no_sample_and_an_error_naming_the_service() -> None:
    def unreachable() -> dict[str, Any]:
        raise RetryableActuatorError("systemd: cannot reach the D-Bus at unix:path=/nope: refused")

    src = UnitStateSource("web", "systemd", unreachable, 10.0)
    with pytest.raises(SourceError, match=r"^service web: cannot read its systemd unit's state \(no up sampled: "
                                          r"unknown, not down\): systemd: cannot reach the D-Bus"):
        src.collect(5.0)


def test_a_manager_that_did_not_answer_two_reads_in_a_row_is_not_asked_the_rest_of_the_collection() -> None:
    """Five containers on one Docker engine that hangs: each read used to wait out its limit, one
    after another (five limits a collection). Now, after two unanswered reads in a row of one
    collection, the other three are not made (each says why, naming the engine) while another
    manager's units are still read; the next collection asks again. An error answer (no such
    container) is an answer: it ends the run."""
    from autonomic.errors import TerminalActuatorError
    from autonomic.monitor.unanswered import Unanswered

    asked: list[str] = []
    answers: dict[str, Exception | None] = {}

    def read(name: str) -> Any:
        def read_it() -> dict[str, Any]:
            asked.append(name)
            if (exc := answers.get(name)) is not None:
                raise exc
            return {"Running": True}
        return read_it

    hung = RetryableActuatorError("docker: engine at unix:///run/docker.sock unreachable during inspect: timed out")
    shared = Unanswered("reads", "each unreachable, not answering in time, or busy")
    engine = "the Docker engine at unix:///run/docker.sock"
    sources = [UnitStateSource(f"web{i}", "docker", read(f"web{i}"), 10.0, lane=engine, unanswered=shared)
               for i in range(5)]
    other = UnitStateSource("db", "docker", read("db"), 10.0, lane="the Docker engine at tcp://db-host:2375",
                            unanswered=shared)
    answers.update(dict.fromkeys([f"web{i}" for i in range(5)], hung))

    def collect(now: float) -> list[str]:
        said = []
        for src in [*sources[:2], other, *sources[2:]]:
            try:
                src.collect(now)
                said.append(f"{src.service}: read")
            except SourceError as exc:
                said.append(f"{src.service}: {exc}")
        return said

    said = collect(5.0)
    assert asked == ["web0", "web1", "db"]
    assert said[2] == "db: read"
    for line in said[3:]:
        assert line.endswith(f"(no up sampled: unknown, not down): not asked: {engine} gave no complete answer to "
                             "2 reads in a row in this collection (each unreachable, not answering in time, or busy); "
                             "asked again at the next"), line
    asked.clear()
    collect(6.0)
    assert asked == ["web0", "web1", "db"], "the next collection asks again"
    asked.clear()
    answers["web1"] = TerminalActuatorError("docker: no such container 'web1' at unix:///run/docker.sock")
    collect(7.0)
    assert asked == ["web0", "web1", "db", "web2", "web3"], "an error answer is an answer"


def test_a_service_whose_unit_is_read_may_report_its_up_and_a_workloads_rollout() -> None:
    def svc(**actuators: Any) -> ServiceSpec:
        return ServiceSpec.model_validate({"name": "web", "actuators": actuators})

    assert svc(systemd={"unit": "web.service"}).may_report("up")
    assert not svc(systemd={"unit": "web.service"}).may_report("probe_ok")
    assert not svc(docker={"container": "web"}).may_report("rollout_complete")
    assert svc(kubernetes={"name": "web"}).may_report("rollout_complete")
    both = svc(systemd={"unit": "web.service"}, process={"command": ["web"]})
    assert both.may_report("up") and not both.may_report("available_ratio")  # the process's up; no unit read
    assert not svc(shell={"runbooks": {}}).may_report("up")


def _pattern(verify: dict[str, Any], kind: str = "shell") -> Pattern:
    return Pattern(id="p", match=PatternMatch(cause="down"), action=ActionSpec(type=kind, target="{service}"),
                   prior_confidence=0.9, verify=VerifySpec.model_validate(verify))


def test_a_remedy_verified_by_a_probe_or_a_units_up_is_passed_over_only_where_neither_is_sampled() -> None:
    p = _pattern({"metric": "probe_ok", "fallback_metric": "up", "min": 1})
    shell_only = ServiceSpec.model_validate({"name": "web", "actuators": {"shell": {}}})
    unit = ServiceSpec.model_validate({"name": "web", "actuators": {"shell": {}, "systemd": {"unit": "w.service"}}})
    assert cannot_run([p], {"shell": object()}, "web", shell_only.may_report) == {"p": (
        "web has no probe (probes:) nor a unit whose state autonomic reads to verify it by: nothing samples its "
        "probe_ok or up")}
    assert cannot_run([p], {"shell": object(), "systemd": object()}, "web", unit.may_report) == {}


def test_a_fallback_metric_must_differ_from_the_metric_and_takes_numbers_not_the_services_line() -> None:
    with pytest.raises(ValidationError, match="fallback_metric: 'up' is the metric itself"):
        PatternYaml.model_validate({"id": "p", "match": {"cause": "down"}, "prior_confidence": 0.9,
                                    "verify": {"metric": "up", "fallback_metric": "up", "min": 1}})
    with pytest.raises(ValidationError, match="fallback_metric: max: threshold is the service's line"):
        PatternYaml.model_validate({"id": "p", "match": {"cause": "memory"}, "prior_confidence": 0.9,
                                    "verify": {"metric": "memory_percent", "fallback_metric": "rss_bytes",
                                               "max": "threshold"}})
