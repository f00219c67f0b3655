"""Config rules that relate two fields: each refused with both named, at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from autonomic import config as config_module
from autonomic.config import ServiceSpec, load_config_data
from autonomic.errors import ConfigError


def test_alert_resolve_after_s_below_resolve_after_s_is_refused_naming_both(tmp_path: Path) -> None:
    refused = r"engine: .*alert_resolve_after_s \(60\) must be at least resolve_after_s \(600\)"
    with pytest.raises(ConfigError, match=refused):
        load_config_data({"engine": {"resolve_after_s": 600, "alert_resolve_after_s": 60}}, source="a.yaml",
                         base_dir=tmp_path)
    def quiet_s(engine: dict[str, float]) -> float:
        return load_config_data({"engine": engine}, source="a.yaml", base_dir=tmp_path).engine.alert_quiet_s

    assert quiet_s({"resolve_after_s": 600}) == 18000.0  # unset: 5 h, or resolve_after_s when longer
    assert quiet_s({"resolve_after_s": 2 * 86400.0}) == 2 * 86400.0
    assert quiet_s({"resolve_after_s": 600, "alert_resolve_after_s": 900}) == 900.0


def test_a_trend_needing_more_history_than_the_series_store_keeps_is_refused_naming_both(tmp_path: Path) -> None:
    """A forecast needs half its window of history; the series store keeps 720 samples, so a
    one-hour window at a 1 s interval (719 s kept) could never forecast."""
    def load(interval_s: float, trends: list[dict[str, object]] | None) -> None:
        service: dict[str, object] = {"name": "api", **({"trends": trends} if trends is not None else {})}
        load_config_data({"engine": {"interval_s": interval_s}, "services": [service]}, source="a.yaml",
                         base_dir=tmp_path)

    refused = (r"services\[0\]\.trends\[0\]: the memory_percent trend needs 1800 s of history .*"
               r"keeps 720 samples, 719 s at interval_s 1")
    with pytest.raises(ConfigError, match=refused):
        load(1, [{"metric": "memory_percent", "window_s": 3600}])
    load(5, [{"metric": "memory_percent", "window_s": 3600}])
    load(1, [{"metric": "memory_percent", "window_s": 3600, "min_span_s": 600}])
    load(0.1, None)  # the default checks fit themselves to the history kept (default_trend_specs)


def test_a_line_forecast_or_anomaly_watch_of_a_metric_no_source_samples_is_warned_of_naming_its_place(
        tmp_path: Path) -> None:
    """A line in thresholds.extra, a trend, a seasonal trend or an anomaly watch of a metric that
    none of the service's sources samples (a typo: queue_dept) was valid and silent, and never
    fired. Still valid: a warning at its place naming what the sources do sample. None for a
    metric they sample, nor for a scrape that keeps every sample under its own name."""
    def warnings(metrics: list[dict[str, object]]) -> list[str]:
        service = {"name": "api", "metrics": metrics,
                   "thresholds": {"extra": {"queue_dept": 10, "queue_depth": 10}},
                   "trends": [{"metric": "queue_depth"}, {"metric": "memroy_percent", "threshold": 90}],
                   "seasonal_trends": [{"metric": "disk_pct", "threshold": 90}],
                   "anomalies": [{"metric": "latency_ms"}, {"metric": "latncy_ms"}]}
        cfg = load_config_data({"services": [service]}, source="a.yaml", base_dir=tmp_path)
        return [f"{w.field}: {w.message}" for w in cfg.warnings]

    sampled = "its sources sample queue_depth, latency_ms"
    query = [{"type": "promql", "url": "http://127.0.0.1:9", "query": q, "metric": m}
             for q, m in (("q", "queue_depth"), ("l", "latency_ms"))]
    assert warnings(query) == [
        f"services[0].thresholds.extra.queue_dept: no source of service api samples 'queue_dept', so its "
        f"threshold would never be crossed; {sampled}",
        f"services[0].trends[1].metric: no source of service api samples 'memroy_percent', so its trend would "
        f"never be forecast; {sampled}",
        f"services[0].seasonal_trends[0].metric: no source of service api samples 'disk_pct', so its seasonal "
        f"trend would never be forecast; {sampled}",
        f"services[0].anomalies[1].metric: no source of service api samples 'latncy_ms', so its anomalies would "
        f"never be seen; {sampled}"]
    assert warnings([{"type": "prometheus", "url": "http://127.0.0.1:9/metrics"}]) == []


def test_a_trend_whose_window_holds_fewer_samples_than_its_min_points_is_refused_naming_both(
        tmp_path: Path) -> None:
    """At a 60 s interval a 300 s window holds 6 samples; a forecast needs min_points (8) of them,
    so it could never be made."""
    def load(interval_s: float, trend: dict[str, object]) -> None:
        load_config_data({"engine": {"interval_s": interval_s},
                          "services": [{"name": "api", "trends": [trend]}]}, source="a.yaml", base_dir=tmp_path)

    refused = (r"services\[0\]\.trends\[0\]: the memory_percent trend's window_s 300 holds 6 samples at "
               r"interval_s 60, fewer than its min_points 8: it would never forecast; make window_s at least 480")
    with pytest.raises(ConfigError, match=refused):
        load(60, {"metric": "memory_percent"})
    load(60, {"metric": "memory_percent", "window_s": 480})
    load(60, {"metric": "memory_percent", "min_points": 6})
    load(30, {"metric": "memory_percent"})


def test_a_trend_whose_longer_view_needs_more_history_than_the_store_keeps_is_refused_naming_the_field(
        tmp_path: Path) -> None:
    """The staircase view needs twice window_s of history: at a 0.5 s interval the series store
    keeps 359.5 s, less than 600 s, so long_window_s could never be used; at 1 s (719 s) it can."""
    def load(interval_s: float) -> None:
        load_config_data({"engine": {"interval_s": interval_s},
                          "services": [{"name": "api", "trends": [{"metric": "memory_percent", "window_s": 300,
                                                                   "min_span_s": 100, "long_window_s": 1200}]}]},
                         source="a.yaml", base_dir=tmp_path)

    with pytest.raises(ConfigError, match=r"services\[0\]\.trends\[0\]\.long_window_s: the memory_percent trend's "
                                          r"longer view needs 600 s of history \(twice window_s\) but the series "
                                          r"store keeps 359\.5 s at interval_s 0\.5"):
        load(0.5)
    load(1)
    with pytest.raises(ConfigError, match=r"long_window_s \(500\) must be at least twice window_s \(300\)"):
        load_config_data({"services": [{"name": "api", "trends": [{"metric": "memory_percent",
                                                                   "long_window_s": 500}]}]},
                         source="a.yaml", base_dir=tmp_path)


def test_a_trend_of_a_promql_range_metric_is_judged_at_the_query_s_step_not_the_engine_s_interval(
        tmp_path: Path) -> None:
    """A range query yields a point every step_s whatever the collection interval: at a 60 s
    interval a 15 s step puts 21 points in a 300 s window (a forecast is made), so that trend is
    taken; a 60 s step at a 5 s interval puts 6 there, fewer than min_points 8, so it is refused,
    naming the step."""
    def load(interval_s: float, step_s: float) -> None:
        query = {"type": "promql", "url": "http://127.0.0.1:9", "query": "q", "metric": "memory_percent",
                 "mode": "range", "step_s": step_s}
        load_config_data({"engine": {"interval_s": interval_s},
                          "services": [{"name": "api", "metrics": [query],
                                        "trends": [{"metric": "memory_percent"}]}]},
                         source="a.yaml", base_dir=tmp_path)

    load(60, 15)
    with pytest.raises(ConfigError, match=r"services\[0\]\.trends\[0\]: the memory_percent trend's window_s 300 "
                                          r"holds 6 samples at its range query's step_s 60, fewer than its "
                                          r"min_points 8: it would never forecast; make window_s at least 480"):
        load(5, 60)


def test_the_config_fingerprint_is_what_decides_what_the_engine_does_not_what_is_each_replicas_own(
        tmp_path: Path) -> None:
    def fingerprint(**changes: object) -> str:
        data: dict[str, object] = {
            "engine": {"state_dir": str(tmp_path / "a"), "leader_election": {"enabled": True, "identity": "a"}},
            "services": [{"name": "web"}], "policy": {"autonomy": "approve"}, "api": {"port": 8470}}
        data.update(changes)
        return load_config_data(data, source="autonomic.yaml", base_dir=tmp_path).fingerprint

    base = fingerprint()
    assert fingerprint(engine={"state_dir": str(tmp_path / "b"),
                               "leader_election": {"enabled": True, "identity": "b"}},
                       api={"port": 8471}) == base
    assert fingerprint(policy={"autonomy": "auto"}) != base
    assert fingerprint(services=[{"name": "web"}, {"name": "api"}]) != base
    assert fingerprint(builtin_patterns=False) != base
    # the same pattern file, from another folder (another replica's mount, another install): the same
    text = ("id: my-pattern\nversion: 1\ndescription: d\nmatch: {cause: down}\nprior_confidence: 0.5\n")
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "p.yaml").write_text(text)
    mine = fingerprint(patterns=[str(tmp_path / "one")])
    assert mine != base and fingerprint(patterns=[str(tmp_path / "two")]) == mine


def test_repeated_service_names_are_refused_each_named_once_and_depends_on_names_only_listed_services(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule the fleet-sized check (names counted once, not per name) must keep. Each unknown
    dependency is its own problem at its own place (before: one, under ``services``)."""
    def load(services: list[dict[str, object]]) -> None:
        load_config_data({"services": services}, source="a.yaml", base_dir=tmp_path)

    many: list[dict[str, object]] = [{"name": f"s{i}"} for i in range(50)]
    with pytest.raises(ConfigError, match=r"service names must be unique: s3, s7$"):
        load([*many, {"name": "s7"}, {"name": "s3"}, {"name": "s7"}])
    with pytest.raises(ConfigError) as err:
        load([*many[:9], {"name": "s9", "depends_on": ["s1", "s50", "x"]}, *many[10:]])
    assert [(p.field, p.message) for p in err.value.problems] == [
        ("services[9].depends_on[1]", "no service named 's50'; did you mean 's5'?"),
        ("services[9].depends_on[2]", "no service named 'x'")]
    with monkeypatch.context() as m:  # past the names it may compare, as in a fleet: placed, without the hint
        m.setattr(config_module, "_HINT_COMPARISONS", 49)
        with pytest.raises(ConfigError) as err:
            load([*many[:9], {"name": "s9", "depends_on": ["s50"]}, *many[10:]])
    assert [(p.field, p.message) for p in err.value.problems] == [
        ("services[9].depends_on[0]", "no service named 's50'")]
    load([*many, {"name": "top", "depends_on": ["s49", "s0"]}])


def test_a_pattern_verified_against_a_threshold_some_service_that_can_run_it_lacks_is_refused_naming_them(
    tmp_path: Path,
) -> None:
    """``max: threshold`` of queue_depth, which no built-in threshold covers: every service that can
    carry out the pattern (binds its actuator) must set it in thresholds.extra; the error names the
    pattern's file and line and the services without it. A service that cannot run it need not."""
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "queue.yaml").write_text(
        "id: queue-restart\nmatch: {cause: queue_depth}\naction: {type: process, params: {op: restart}}\n"
        "prior_confidence: 0.5\nverify: {metric: queue_depth, max: threshold}\n")
    proc = {"process": {"command": ["true"]}}

    def load(services: list[dict[str, object]]) -> None:
        load_config_data({"services": services, "patterns": ["p"]}, source="a.yaml", base_dir=tmp_path)

    refused = (r"queue\.yaml:1: verify\.max: threshold: pattern queue-restart is verified against the service's "
               r"own threshold for 'queue_depth', which api, jobs do not set")
    with pytest.raises(ConfigError, match=refused):
        load([{"name": "api", "actuators": proc}, {"name": "jobs", "actuators": proc}, {"name": "web"}])
    load([{"name": "api", "actuators": proc, "thresholds": {"extra": {"queue_depth": 500}}}, {"name": "web"}])
    # a floor: min: threshold, from thresholds.minimums (a maximum of the same metric is no floor)
    (tmp_path / "p" / "queue.yaml").write_text(
        "id: pool-grow\nmatch: {cause: pool}\naction: {type: process, params: {op: restart}}\n"
        "prior_confidence: 0.5\nverify: {metric: pool_free, min: threshold}\n")
    with pytest.raises(ConfigError, match=r"queue\.yaml:1: verify\.min: threshold: pattern pool-grow is verified "
                                          r"against the service's own floor for 'pool_free', which api does not set: "
                                          r"add it under thresholds.minimums"):
        load([{"name": "api", "actuators": proc, "thresholds": {"extra": {"pool_free": 5}}}])
    load([{"name": "api", "actuators": proc, "thresholds": {"minimums": {"pool_free": 5}}}])


def test_a_misspelt_key_is_named_with_the_key_meant_even_under_a_mapping_and_a_bad_name_in_words(
        tmp_path: Path) -> None:
    """A first config's typical mistakes. Before: "Extra inputs are not permitted" for a misspelt
    key, and "String should match pattern '^[a-z0-9][a-z0-9_-]{0,62}$'" for a service name."""
    data = {"engine": {"intervall_s": 2},
            "services": [{"name": "MyApp", "thresholds": {"memory_precent": 85}}],
            "policy": {"patterns": {"process-down-restart": {"autonomyy": "approve"}}}}
    with pytest.raises(ConfigError) as err:
        load_config_data(data, source="autonomic.yaml", base_dir=tmp_path)
    said = {p.field: p.message for p in err.value.problems}
    assert said["engine.intervall_s"] == "unknown field 'intervall_s'; did you mean 'interval_s'?"
    assert said["services[0].thresholds.memory_precent"] == (
        "unknown field 'memory_precent'; did you mean 'memory_percent'?")
    assert said["policy.patterns.process-down-restart.autonomyy"] == (
        "unknown field 'autonomyy'; did you mean 'autonomy'?")
    assert said["services[0].name"].startswith("'MyApp' is not a service name: lowercase letters, digits")


def test_a_misspelt_actuator_type_fallback_param_or_policy_name_is_named_with_the_one_meant(tmp_path: Path) -> None:
    """Names checked outside the schema (the registry's types, an actuator's Params, the policy's
    services, patterns and action types) get the same hint as a misspelt field. Before: the whole
    list of known types (or pattern ids), or no hint at all for a fallback's params."""
    command = ["python3", "svc.py"]
    with pytest.raises(ConfigError) as err:
        load_config_data({"services": [
            {"name": "app", "actuators": {"proces": {"command": command}}},
            {"name": "web", "actuators": {"process": {"command": command}},
             "fallback": {"type": "process", "params": {"op": "graceful_restart", "grace_sec": 5}}}]},
            source="autonomic.yaml", base_dir=tmp_path)
    said = {p.field: p.message for p in err.value.problems}
    assert said == {"services[0].actuators.proces": "unknown actuator type 'proces'; did you mean 'process'?",
                    "services[1].fallback.params.grace_sec": "unknown field 'grace_sec'; did you mean 'grace_s'?"}
    with pytest.raises(ConfigError) as err:
        load_config_data({"services": [{"name": "web"}],
                          "policy": {"services": {"wbe": {"autonomy": "observe"}},
                                     "patterns": {"proces-down-restart": {"autonomy": "approve"}},
                                     "actions": {"procss": {"enabled": False}}}},
                         source="autonomic.yaml", base_dir=tmp_path)
    said = {p.field: p.message for p in err.value.problems}
    assert said == {"policy.services.wbe": "no service named 'wbe'; did you mean 'web'?",
                    "policy.patterns.proces-down-restart": ("no pattern named 'proces-down-restart'; "
                                                            "did you mean 'process-down-restart'?"),
                    "policy.actions.procss": "no action type named 'procss'; did you mean 'process'?"}


def test_a_misspelt_type_or_choice_is_named_with_the_one_meant_and_a_type_at_its_key(tmp_path: Path) -> None:
    """Before: "Input tag 'webhok' found using 'type' does not match any of the expected tags:
    ..." at notifiers[0] (for metrics, "found using _metrics_type()", a function's name), and
    the allowed values alone for a misspelt choice."""
    data = {"services": [{"name": "app", "metrics": [{"type": "prometeus", "url": "http://127.0.0.1:9/metrics"}]}],
            "notifiers": [{"type": "webhok", "url": "http://127.0.0.1:9/"}, {"type": "pager"}],
            "policy": {"autonomy": "aprove"}}
    with pytest.raises(ConfigError) as err:
        load_config_data(data, source="autonomic.yaml", base_dir=tmp_path)
    said = {p.field: p.message for p in err.value.problems}
    assert said == {
        "services[0].metrics[0].type": "unknown type 'prometeus'; did you mean 'prometheus'?",
        "notifiers[0].type": "unknown type 'webhok'; did you mean 'webhook'?",
        "notifiers[1].type": "unknown type 'pager' (known: console, jsonl, slack, webhook, email)",
        "policy.autonomy": "Input should be 'observe', 'suggest', 'approve' or 'auto'; did you mean 'approve'?"}


def test_one_run_lists_a_bindings_problems_beside_the_schemas_and_a_command_string_is_named_as_such(
        tmp_path: Path) -> None:
    """Before, a binding was checked only once the rest of the file was valid: fixing a typo in
    ``engine:`` revealed the one in ``actuators.process`` at the next run. And a command written as
    one string was "Input should be a valid list", not what to write instead."""
    data = {"engine": {"intervall_s": 2},
            "services": [{"name": "app", "actuators": {"process": {"comand": ["python3", "svc.py"]}}},
                         {"name": "web", "actuators": {"process": {"command": "python3 web.py --port 80"}}}]}
    with pytest.raises(ConfigError) as err:
        load_config_data(data, source="autonomic.yaml", base_dir=tmp_path)
    said = {p.field: p.message for p in err.value.problems}
    assert said["engine.intervall_s"] == "unknown field 'intervall_s'; did you mean 'interval_s'?"
    assert said["services[0].actuators.process.comand"] == "unknown field 'comand'; did you mean 'command'?"
    assert "must be a list of arguments (argv), not one string: ['python3', 'web.py', '--port', '80']" in (
        said["services[1].actuators.process.command"])


def test_a_service_may_report_a_metric_through_its_probes_or_a_metrics_source_naming_it() -> None:
    """What the engine asks before running a remedy verified by a probe's metric on a service."""
    def svc(**kw: object) -> ServiceSpec:
        return ServiceSpec.model_validate({"name": "web", **kw})

    probe = {"type": "http", "url": "http://127.0.0.1:1/health"}
    assert svc(probes=[probe]).may_report("probe_ok")
    assert not svc().may_report("probe_ok")
    assert not svc(probes=[probe]).may_report("up")
    promql = {"type": "promql", "url": "http://prom:9090", "query": "up{job='web'}", "metric": "up"}
    assert svc(metrics=[promql]).may_report("up") and not svc(metrics=[promql]).may_report("probe_ok")
    scrape = {"type": "prometheus", "url": "http://127.0.0.1:1/metrics"}
    assert svc(metrics=[scrape]).may_report("probe_ok")  # every sample kept under its own name: it may be one
    renamed = {**scrape, "rename": {"web_up": "up"}}
    assert svc(metrics=[renamed]).may_report("up") and not svc(metrics=[renamed]).may_report("probe_ok")


@pytest.mark.parametrize(("data", "said"), [
    ({"services": ["web"]}, "services[0]: should be a mapping (an object of named values), not a string"),
    ({"engine": [1]}, "engine: should be a mapping (an object of named values), not a list"),
])
def test_a_section_that_is_not_a_mapping_is_said_so_in_words_not_with_a_class_name(
        tmp_path: Path, data: dict[str, object], said: str) -> None:
    """Before: "Input should be a valid dictionary or instance of ServiceSpec"."""
    with pytest.raises(ConfigError) as caught:
        load_config_data(data, source="autonomic.yaml", base_dir=tmp_path)
    assert [f"{p.field}: {p.message}" for p in caught.value.problems] == [said]


def test_engine_notify_retry_for_s_defaults_to_an_hour_and_must_be_30_s_to_a_week(tmp_path: Path) -> None:
    """How long the outbox offers a notification again to a notifier that is down: an hour unless
    set; below 30 s (no retry at all) or past a week it is refused, naming the field."""
    def load(value: object) -> float:
        return load_config_data({"engine": {"notify_retry_for_s": value}}, source="a.yaml",
                                base_dir=tmp_path).engine.notify_retry_for_s

    assert load_config_data({}, source="a.yaml", base_dir=tmp_path).engine.notify_retry_for_s == 3600
    assert load(14_400) == 14_400
    for bad in (0, -5, 10, 8 * 86_400, "soon"):
        with pytest.raises(ConfigError) as err:
            load(bad)
        assert [p.field for p in err.value.problems] == ["engine.notify_retry_for_s"], (bad, err.value.problems)


def test_a_metric_recorded_by_two_sources_of_a_service_is_refused_naming_it(tmp_path: Path) -> None:
    """Two queries (or a query and a scrape's rename) onto one metric would interleave two series
    into one: sustain and a threshold would count a mix. Other services, other metrics: fine."""
    query = {"type": "promql", "url": "http://prometheus:9090", "query": "sum(rate(errors_total[1m]))",
             "metric": "error_rate"}
    scrape = {"type": "prometheus", "url": "http://web:8080/metrics", "rename": {"app_errors_ratio": "error_rate"}}

    def load(*metrics: dict[str, object]) -> object:
        return load_config_data({"services": [{"name": "web", "metrics": list(metrics)},
                                              {"name": "api", "metrics": [query]}]},
                                source="a.yaml", base_dir=tmp_path)

    refused = r"a.yaml:1: services\[0\]\.metrics: metric error_rate recorded by two sources; a metric takes one series"
    with pytest.raises(ConfigError, match=refused):
        load(query, scrape)
    with pytest.raises(ConfigError, match=refused):
        load(query, {**query, "query": "avg(errors_ratio)"})
    load(query, {**scrape, "rename": {"app_errors_ratio": "app_error_rate"}})


def test_a_metric_the_probes_or_the_supervisor_sample_recorded_by_a_metrics_source_too_is_refused(
        tmp_path: Path) -> None:
    """A promql ``up`` beside the supervisor's ``up`` (Prometheus failing to scrape a live process)
    interleaved 1 and 0 into one series: never down for down_after, availability halved."""
    def load(**service: object) -> object:
        return load_config_data({"services": [{"name": "web", **service}]}, source="a.yaml", base_dir=tmp_path)

    up = {"type": "promql", "url": "http://prometheus:9090", "query": 'up{job="web"}', "metric": "up"}
    process = {"process": {"command": ["/bin/sleep", "100"]}}
    with pytest.raises(ConfigError, match=r"services\[0\]: metric up recorded by its metrics sources and sampled by "
                                          r"its process binding's supervisor too; a metric takes one series"):
        load(actuators=process, metrics=[up])
    scrape = {"type": "prometheus", "url": "http://web:8080/metrics", "rename": {"health": "probe_ok"}}
    with pytest.raises(ConfigError, match=r"metric probe_ok recorded by its metrics sources and sampled by its probes"):
        load(probes=[{"url": "http://web:8080/health"}], metrics=[scrape])
    load(metrics=[up])  # no process binding: the query's up is the service's one up series
    load(actuators=process, metrics=[{**up, "metric": "prometheus_up"}])


def test_a_kubernetes_or_docker_binding_naming_what_could_not_be_named_there_is_refused(
        tmp_path: Path) -> None:
    """The workload and its namespace, the container, are segments of every API path the actuator
    calls (a ``..`` there is resolved away by the HTTP client before the request is sent): a name
    Kubernetes (or Docker) could not give an object is refused at load, naming the field."""
    data = {"services": [{"name": "web", "actuators": {"kubernetes": {"name": "..", "namespace": "Shop"}}},
                         {"name": "db", "actuators": {"docker": {"container": "../volumes/db"}}}]}
    with pytest.raises(ConfigError) as err:
        load_config_data(data, source="autonomic.yaml", base_dir=tmp_path)
    said = {p.field: p.message for p in err.value.problems}
    assert said["services[0].actuators.kubernetes.name"].startswith("'..' is not a Kubernetes object name")
    assert said["services[0].actuators.kubernetes.namespace"].startswith("'Shop' is not a Kubernetes namespace")
    # the Docker SDK leaves '/' unquoted in its paths: this container's restart would POST /volumes/db/restart
    assert said["services[1].actuators.docker.container"].startswith("'../volumes/db' is not a container name")
