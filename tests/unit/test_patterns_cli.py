from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from autonomic.plan.patterns_cli import patterns_app

runner = CliRunner()

INCIDENT: dict[str, Any] = {
    "id": "abcdef0123456789",
    "service": "api",
    "cause": "pool",
    "severity": "critical",
    "kind": "forecast",
    "opened_at": 100,
    "updated_at": 100,
    "last_finding_at": 100,
    "summary": "pool heading for exhaustion",
}
FINDING: dict[str, Any] = {
    "service": "api",
    "metric": "pool_utilization",
    "kind": "forecast",
    "cause": "pool",
    "severity": "critical",
    "confidence": 0.9,
    "ts": 100,
    "summary": "pool at 100% in 5 minutes",
}


def run(*args: str) -> Any:
    return runner.invoke(patterns_app, list(args))


def incident_file(tmp_path: Path, **overrides: Any) -> Path:
    incident = {**INCIDENT, **overrides}  # its finding is of its service and cause, as the engine's are
    body = {"incident": incident, "findings": [{**FINDING, "service": incident["service"], "cause": incident["cause"]}]}
    path = tmp_path / "incident.json"
    path.write_text(json.dumps(body))
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config with the built-in library plus one escalate-only pattern of its own."""
    pdir = tmp_path / "patterns"
    pdir.mkdir()
    (pdir / "mine.yaml").write_text(
        "id: pool-page-a-person\n"
        "version: 3\n"
        "match: {cause: pool, min_severity: warning}\n"
        "prior_confidence: 0.3\n"
        "verify: {metric: pool_utilization, max: 90}\n"
    )
    cfg = tmp_path / "autonomic.yaml"
    # api's pool is raised through its config file (a binding of the config actuator): the engine
    # would take pool-exhaustion-raise for it, and passes over the restarts (api binds none)
    cfg.write_text("patterns: [patterns]\nservices: [{name: api, type: web, actuators: {config: {repo: "
                   f"'{tmp_path / 'repo'}', file: pool.yaml}}}}}}]\n")
    return cfg


def test_list_shows_each_pattern_with_its_summary(config: Path) -> None:
    out = run("list", "-c", str(config))
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split() == ["ID", "VER", "MATCH", "ACTION", "PRIOR", "ROLLBACK-SAFE"]
    mine = next(line for line in lines if line.startswith("pool-page-a-person"))
    assert mine.split() == ["pool-page-a-person", "3", "cause=pool", "min_severity=warning", "escalate", "0.3",
                            "-"]  # nothing to roll back: rollback safety does not apply
    pool = next(line for line in lines if line.startswith("pool-exhaustion-raise"))
    assert "cause=pool kind=forecast" in pool and "config scale" in pool and pool.endswith("true")
    disk = next(line for line in lines if line.startswith("disk-fill-cleanup"))
    assert "shell runbook:disk-cleanup" in disk  # which runbook, not only "shell"
    revert = next(line for line in lines if line.startswith("error-spike-after-config-revert"))
    assert "after_change_s=900 " in revert  # as written, not 900.0


def test_list_json(config: Path) -> None:
    out = run("list", "--config", str(config), "--json")
    rows = {r["id"]: r for r in json.loads(out.output)}
    assert rows["pool-page-a-person"] == {
        "id": "pool-page-a-person",
        "version": 3,
        "match": "cause=pool min_severity=warning",
        "action": "escalate",
        "prior": 0.3,
        "rollback_safe": None,
    }
    assert "process-down-restart" in rows  # the built-in library is there too


def test_show_prints_the_pattern_as_yaml_with_its_source(config: Path, tmp_path: Path) -> None:
    out = run("show", "pool-page-a-person", "-c", str(config))
    assert out.exit_code == 0, out.output
    first, rest = out.output.split("\n", 1)
    assert first == f"# source: {tmp_path / 'patterns' / 'mine.yaml'}:1"
    body = yaml.safe_load(rest)
    assert body["id"] == "pool-page-a-person" and body["version"] == 3
    assert body["action"] is None and body["match"] == {"cause": "pool", "min_severity": "warning"}
    assert list(body)[:4] == ["id", "version", "description", "match"]

    builtin = yaml.safe_load(run("show", "pool-exhaustion-raise", "-c", str(config)).output)
    assert builtin["action"]["type"] == "config" and builtin["action"]["params"]["factor"] == 1.2


def test_show_unknown_id_exits_2_listing_known_ids(config: Path) -> None:
    out = run("show", "nope", "-c", str(config))
    assert out.exit_code == 2
    assert "unknown pattern 'nope' (known: " in out.output and "pool-exhaustion-raise" in out.output
    assert "without -c" not in out.output


def test_an_id_unknown_without_a_config_says_that_only_the_built_in_library_was_read() -> None:
    """``autonomic patterns test my-own-pattern --incident ...`` with no -c: before, only
    "unknown pattern" and the built-ins' ids, leaving the reader to guess why theirs was missing."""
    out = run("show", "my-own-pattern")
    assert out.exit_code == 2
    assert "without -c only the built-in library is read: -c autonomic.yaml for your own" in out.output


def test_test_matching_pattern_prints_confidence_reasons_and_rank(config: Path, tmp_path: Path) -> None:
    out = run("test", "pool-exhaustion-raise", "--incident", str(incident_file(tmp_path)), "-c", str(config))
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    head = "pool-exhaustion-raise matches incident abcdef01 (api, cause pool, kind forecast): confidence "
    assert lines[0].startswith(head) and lines[0].endswith(", rank 1 of 6")
    assert 0.5 < float(lines[0][len(head):].split(",")[0]) <= 0.8  # the prior 0.8 times match quality
    assert "  - cause pool == pool" in lines and "  - kind forecast matched" in lines
    assert lines[-7] == "candidates:"
    # the restarts through each actuator tie: api binds none of them, so autonomic's own process
    # actuator's goes first, as the engine ranks them, then by id
    assert [line.split()[:2] for line in lines[-6:]] == [
        ["1.", "pool-exhaustion-raise"], ["2.", "pool-exhaustion-restart"], ["3.", "docker-pool-exhaustion-restart"],
        ["4.", "kubernetes-pool-exhaustion-rollout-restart"], ["5.", "systemd-pool-exhaustion-restart"],
        ["6.", "pool-page-a-person"]]


def test_test_of_a_service_the_config_does_not_name_passes_over_what_it_cannot_run_as_the_engine_does(
        config: Path, tmp_path: Path) -> None:
    """An alert may name a service the config does not: it has no bindings, so the engine passes
    every pattern with an action over. `patterns test -c` said the pattern would act; then it
    listed "passed over here" among the reasons but still said "matches", exit 0, and its
    candidates did not mark the passed-over ones. Now the verdict says the engine would not take
    it, and what it would take instead (here the hand-over), exit 1 as for no match."""
    path = incident_file(tmp_path, service="ghost")
    out = run("test", "pool-exhaustion-raise", "--incident", str(path), "-c", str(config))
    assert out.exit_code == 1, out.output
    lines = out.output.splitlines()
    assert lines[0] == ("pool-exhaustion-raise matches incident abcdef01 (ghost, cause pool, kind forecast) but is "
                        "passed over here: ghost has no config actuator binding; pool-page-a-person would be taken "
                        "instead"), lines[0]
    assert "  - passed over here: ghost has no config actuator binding" in lines, out.output
    listed = lines[lines.index("candidates:") + 1:]
    assert [line.endswith("actuator binding)") for line in listed] == [True] * 5 + [False], listed
    assert "  1. pool-exhaustion-raise 0.69 (passed over here: ghost has no config actuator binding)" in listed
    body = json.loads(run("test", "pool-exhaustion-raise", "-i", str(path), "-c", str(config), "--json").output)
    assert (body["matches"], body["passed_over"], body["chosen"]) == (
        True, "ghost has no config actuator binding", "pool-page-a-person")
    assert [r["passed_over"] is not None for r in body["ranking"]] == [True] * 5 + [False]
    bare = run("test", "pool-exhaustion-raise", "--incident", str(path))  # no config: the patterns alone
    assert bare.exit_code == 0 and "passed over here" not in bare.output, bare.output


def test_test_of_a_pattern_passed_over_where_nothing_else_matches_says_no_pattern_would_act(
        tmp_path: Path) -> None:
    """The README's disk incident on spool, which the config names without a shell binding: its
    cleanup matches but spool cannot run it, and nothing else matches. Before, "matches", exit 0."""
    cfg = tmp_path / "autonomic.yaml"
    cfg.write_text("services: [{name: spool}]\n")
    disk = {"incident": {**INCIDENT, "service": "spool", "cause": "disk", "summary": "disk filling"},
            "findings": [{**FINDING, "service": "spool", "metric": "disk_percent", "cause": "disk"}]}
    path = tmp_path / "disk.json"
    path.write_text(json.dumps(disk))
    out = run("test", "disk-fill-cleanup", "-i", str(path), "-c", str(cfg))
    assert out.exit_code == 1, out.output
    assert out.output.splitlines()[0].endswith(
        "but is passed over here: spool has no shell actuator binding; no pattern would act here: nothing "
        "autonomic may do for spool"), out.output
    assert "  1. disk-fill-cleanup 0.61 (passed over here: spool has no shell actuator binding)" in out.output
    body = json.loads(run("test", "disk-fill-cleanup", "-i", str(path), "-c", str(cfg), "--json").output)
    assert body["chosen"] is None and body["passed_over"] == "spool has no shell actuator binding"


def test_test_lower_ranked_match_still_exits_0(config: Path, tmp_path: Path) -> None:
    out = run("test", "pool-page-a-person", "-i", str(incident_file(tmp_path)), "-c", str(config), "--json")
    assert out.exit_code == 0, out.output
    body = json.loads(out.output)
    assert (body["matches"], body["rank"], body["candidates"]) == (True, 6, 6)
    assert body["reasons"][:2] == ["cause pool == pool", "severity critical >= warning"]
    assert "escalate to a person" in body["reasons"][-1]
    assert [r["pattern"] for r in body["ranking"]] == [
        "pool-exhaustion-raise", "pool-exhaustion-restart", "docker-pool-exhaustion-restart",
        "kubernetes-pool-exhaustion-rollout-restart", "systemd-pool-exhaustion-restart", "pool-page-a-person"]
    assert body["confidence"] == body["ranking"][5]["confidence"] < body["ranking"][4]["confidence"]


def test_test_non_matching_pattern_exits_1_with_the_failed_checks(config: Path, tmp_path: Path) -> None:
    path = incident_file(tmp_path)
    out = run("test", "memory-leak-graceful-restart", "--incident", str(path), "-c", str(config))
    assert out.exit_code == 1
    assert "memory-leak-graceful-restart does not match incident abcdef01" in out.output
    assert "  - cause memory != pool" in out.output
    body = json.loads(run("test", "memory-leak-graceful-restart", "-i", str(path), "-c", str(config),
                          "--json").output)
    assert (body["matches"], body["rank"], body["confidence"]) == (False, None, 0.0)


def test_test_context_supplies_what_the_engine_would_know(config: Path, tmp_path: Path) -> None:
    body = {
        "incident": {**INCIDENT, "cause": "errors", "kind": "threshold", "last_finding_at": 1000},
        "findings": [],
        "context": {"last_change_at": 900},
    }
    path = tmp_path / "errors.json"
    path.write_text(json.dumps(body))
    out = run("test", "error-spike-after-config-revert", "-i", str(path), "-c", str(config))
    assert out.exit_code == 0, out.output
    assert "  - config changed 100 s ago, within 900 s" in out.output
    del body["context"]
    path.write_text(json.dumps(body))
    out = run("test", "error-spike-after-config-revert", "-i", str(path), "-c", str(config))
    assert out.exit_code == 1 and "needs a config change made outside autonomic within 900 s: none" in out.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "incident.json:1: not valid JSON"),
        (json.dumps({"incident": {**INCIDENT, "severity": "dire"}}), "incident.json: incident.severity: "),
        (json.dumps({"incident": {k: v for k, v in INCIDENT.items() if k != "cause"}}), "incident.cause: Field"),
        (json.dumps({"incident": INCIDENT, "findings": [{**FINDING, "confidence": 2}]}),
         "incident.json: findings[0].confidence: "),
        (json.dumps({"incident": INCIDENT, "extra": 1}), "incident.json: extra: unknown field 'extra' (known here: "),
        (json.dumps({"incident": INCIDENT, "findngs": []}),
         "findngs: unknown field 'findngs'; did you mean 'findings'?"),
        (json.dumps([1, 2]), "incident.json: (top): should be a mapping (an object of named values), not a list"),
        (json.dumps({"incident": "abc"}), "incident.json: incident: should be a mapping (an object of named values), "
                                          "not a string"),
        # a negative count divided the record factor by zero: a traceback, exit 1
        (json.dumps({"incident": INCIDENT, "findings": [FINDING],
                     "context": {"record": {"pool-exhaustion-raise": [0, -2]}}}),
         "incident.json: context.record.pool-exhaustion-raise[1]: Input should be greater than or equal to 0"),
        # another service's (or cause's) finding matched a pattern the engine, reading the incident's
        # own findings, never could: exit 0 "matches"
        (json.dumps({"incident": INCIDENT, "findings": [{**FINDING, "service": "web"}]}),
         "incident.json: findings[0].service: 'web' is not the incident's 'api'"),
        (json.dumps({"incident": INCIDENT, "findings": [FINDING, {**FINDING, "cause": "errors"}]}),
         "incident.json: findings[1].cause: 'errors' is not the incident's 'pool'"),
    ],
)
def test_test_bad_incident_file_exits_2_naming_the_field(
    config: Path, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "incident.json"
    path.write_text(content)
    out = run("test", "pool-exhaustion-raise", "-i", str(path), "-c", str(config))
    assert out.exit_code == 2
    assert message in out.output
    # in words, as a bad config's problems are: never pydantic's class names, prefixes or links
    for raw in ("Input should be a valid dictionary", "instance of", "Value error, ", "errors.pydantic.dev"):
        assert raw not in out.output


def test_test_missing_incident_file_exits_2(config: Path, tmp_path: Path) -> None:
    out = run("test", "pool-exhaustion-raise", "-i", str(tmp_path / "none.json"), "-c", str(config))
    assert out.exit_code == 2 and "none.json: cannot read" in out.output


def test_test_binary_incident_file_exits_2_naming_it(config: Path, tmp_path: Path) -> None:
    binary = tmp_path / "incident.json"
    binary.write_bytes(b"\xff\xfe\x00{")
    out = run("test", "pool-exhaustion-raise", "-i", str(binary), "-c", str(config))
    assert out.exit_code == 2 and "incident.json: cannot read" in out.output, out.output


def test_bad_config_exits_2_with_the_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("policy: {autonomy: sometimes}\n")
    out = run("list", "-c", str(cfg))
    assert out.exit_code == 2 and "policy.autonomy" in out.output


def test_test_incident_file_nested_too_deeply_exits_2_naming_it(config: Path, tmp_path: Path) -> None:
    deep = tmp_path / "incident.json"
    deep.write_text('{"incident": ' + "[" * 50_000 + "]" * 50_000 + "}")
    out = run("test", "pool-exhaustion-raise", "-i", str(deep), "-c", str(config))
    assert out.exit_code == 2 and "incident.json: nested too deeply" in out.output, out.output


def test_test_reads_what_explain_json_printed_for_a_stored_incident(config: Path, tmp_path: Path) -> None:
    """An author asks whether a new pattern would have taken last night's incident: the incident
    is stored in a real SQLite store, explained as ``autonomic explain ID --json`` does, and the
    document is the --incident file as it is."""
    from autonomic.knowledge import Store
    from autonomic.model import Finding, Incident
    from autonomic.oversight.explain import explain_incident

    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    inc = Incident.model_validate(INCIDENT)
    store.record(inc, Finding.model_validate({**FINDING, "incident_id": inc.id}), actor="engine",
                 event="incident.opened", subject=inc.id)
    doc = tmp_path / "explained.json"
    doc.write_text(json.dumps(explain_incident(store, inc.id), indent=2, default=str))
    store.close()
    out = run("test", "pool-exhaustion-raise", "--incident", str(doc), "-c", str(config))
    assert out.exit_code == 0, out.output
    assert out.output.startswith("pool-exhaustion-raise matches incident abcdef01 (api, cause pool, kind forecast)")


@pytest.mark.parametrize("probes", [True, False])
def test_test_of_a_unit_down_keeps_its_restart_with_or_without_a_probe_as_the_engine_does(
        tmp_path: Path, probes: bool) -> None:
    """api is run by systemd; its down incident matches systemd-down-restart, verified by the probe
    where api has one, else by its unit's state (``up``, which the engine samples of every unit bound
    to systemd): with or without a probe the engine keeps it, and so does `patterns test -c` (before,
    without a probe it was passed over: nothing sampled a unit's state)."""
    probe = ', probes: [{type: http, url: "http://127.0.0.1:1/health"}]' if probes else ""
    cfg = tmp_path / "autonomic.yaml"
    cfg.write_text(f"services: [{{name: api, actuators: {{systemd: {{unit: api.service}}}}{probe}}}]\n")
    down = {"incident": {**INCIDENT, "cause": "down", "kind": "state", "summary": "api is down"},
            "findings": [{**FINDING, "metric": "up", "kind": "state", "cause": "down", "value": 0,
                          "summary": "api is down", "evidence": {}}]}
    path = tmp_path / "down.json"
    path.write_text(json.dumps(down))
    out = run("test", "systemd-down-restart", "-i", str(path), "-c", str(cfg))
    assert out.exit_code == 0, out.output  # it matches either way
    assert "passed over here" not in out.output.split("candidates:")[0], out.output
    (listed,) = [line for line in out.output.splitlines() if "systemd-down-restart 0." in line]
    assert "passed over" not in listed, out.output
