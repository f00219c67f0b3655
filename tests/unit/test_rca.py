"""Root-cause ranking over the dependency graph: synthetic incidents with a seeded RNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from autonomic.analyze.rca import RcaParams, RcaReport, parse_graph, rank
from autonomic.analyze.rca_cli import rca_app, rca_command
from autonomic.errors import ConfigError
from autonomic.longcsv import parse_long_csv

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rca"
T0 = 1704103200.0  # 2024-01-01 10:00:00 UTC

Fault = tuple[int, float]  # (index in the window where the shift starts, shift in baseline sds)


def make_csvs(
    rng: np.random.Generator,
    services: list[str],
    faults: dict[str, Fault],
    n: int = 60,
    noise: float = 2.0,
    metrics: tuple[str, ...] = ("latency_ms",),
) -> tuple[str, str]:
    """(window CSV text, baseline CSV text): each metric ~ N(50, noise); a fault adds shift*noise."""
    head = "timestamp,service,metric,value\n"
    base_rows, win_rows = [], []
    for s in services:
        for m in metrics:
            b = 50 + noise * rng.standard_normal(n)
            w = 50 + noise * rng.standard_normal(n)
            if s in faults:
                start, shift = faults[s]
                w[start:] += shift * noise
            base_rows += [f"{T0 - 3600 + i},{s},{m},{v:.4f}" for i, v in enumerate(b)]
            win_rows += [f"{T0 + i},{s},{m},{v:.4f}" for i, v in enumerate(w)]
    return head + "\n".join(win_rows) + "\n", head + "\n".join(base_rows) + "\n"


def run(edges: list[tuple[str, str]], faults: dict[str, Fault], seed: int = 7, target: str | None = None,
        extra: list[str] | None = None, **kw: float) -> RcaReport:
    services = sorted({s for e in edges for s in e} | set(extra or []))
    win, base = make_csvs(np.random.default_rng(seed), services, faults, **kw)  # type: ignore[arg-type]
    return rank(edges, parse_long_csv(win, "M.csv"), parse_long_csv(base, "B.csv"), target=target)


def by_name(report: RcaReport) -> dict[str, dict]:
    return {r.service: r.model_dump() for r in report.ranking}


CHAIN = [("web", "api"), ("api", "db")]


def test_chain_fault_in_db_ranks_db_first_and_marks_callers_impacted() -> None:
    report = run(CHAIN, {"db": (20, 40.0), "api": (22, 30.0), "web": (25, 25.0)})
    r = by_name(report)
    assert [x.service for x in report.ranking] == ["db", "api", "web"]
    assert report.root_causes == ["db"]
    assert r["db"]["role"] == "root_cause" and r["db"]["score"] >= 0.5
    assert r["api"]["role"] == r["web"]["role"] == "impacted"
    assert r["api"]["caused_by"] == ["db"] and r["web"]["caused_by"] == ["db"]
    assert r["web"]["explained_by"] == ["api"]
    assert r["db"]["onset"] == T0 + 20
    assert any("latency_ms z=" in e and "10:00:20" in e and "2 s before api" in e for e in r["db"]["evidence"])
    assert any("explains 2 anomalous dependents: api, web" in e for e in r["db"]["evidence"])
    assert any("may be explained by db" in e and "2 s earlier" in e for e in r["api"]["evidence_against"])
    assert all(0.0 <= x.score <= 1.0 for x in report.ranking)


def test_simultaneous_onset_is_explained_by_the_dependency() -> None:
    """Same start time: the graph decides, the callee explains the caller even when the caller moved more."""
    r = by_name(run(CHAIN, {"db": (20, 15.0), "api": (20, 40.0), "web": (20, 40.0)}))
    assert r["db"]["role"] == "root_cause"
    assert r["api"]["role"] == "impacted"
    assert any("at the same time" in e for e in r["api"]["evidence_against"])


def test_fault_in_api_only_leaves_db_unaffected() -> None:
    report = run(CHAIN, {"api": (10, 30.0), "web": (14, 20.0)})
    r = by_name(report)
    assert report.ranking[0].service == "api"
    assert report.root_causes == ["api"]
    assert r["web"]["role"] == "impacted"
    assert r["db"]["role"] == "unaffected" and r["db"]["score"] < 0.25
    assert any("all its dependencies are healthy: db (z=" in e for e in r["api"]["evidence"])
    assert any("no metric left its baseline band" in e for e in r["db"]["evidence_against"])


def test_a_departure_against_a_metrics_trouble_direction_explains_nothing() -> None:
    """api's latency *falls* while web's rises: two-sided, api explains web; told that only a
    rise of latency is trouble, api is healthy and web is the root cause."""
    edges = [("web", "api")]
    win, base = make_csvs(np.random.default_rng(3), ["api", "web"], {"api": (10, -30.0), "web": (12, 30.0)})
    both = rank(edges, parse_long_csv(win, "M.csv"), parse_long_csv(base, "B.csv"))
    assert both.root_causes == ["api"]
    rises = rank(edges, parse_long_csv(win, "M.csv"), parse_long_csv(base, "B.csv"),
                 params=RcaParams(directions={"latency_ms": 1}))
    assert rises.root_causes == ["web"]
    assert by_name(rises)["api"]["role"] == "unaffected"
    falls = rank(edges, parse_long_csv(win, "M.csv"), parse_long_csv(base, "B.csv"),
                 params=RcaParams(directions={"latency_ms": -1}))
    assert falls.root_causes == ["api"] and by_name(falls)["web"]["role"] == "unaffected"


def test_a_departure_within_its_metrics_jitter_floor_explains_nothing() -> None:
    """api's latency rises 4 ms (20 sds of a very quiet baseline, sd 0.2 ms) just before web's
    rises 30 ms. Without a floor api explains web; with a 2 ms floor for latency, api's move is
    jitter and web is the root cause."""
    edges = [("web", "api")]
    win, base = make_csvs(np.random.default_rng(4), ["api", "web"], {"api": (8, 20.0), "web": (10, 150.0)},
                          noise=0.2)
    plain = rank(edges, parse_long_csv(win, "M.csv"), parse_long_csv(base, "B.csv"))
    assert plain.root_causes == ["api"]
    floored = rank(edges, parse_long_csv(win, "M.csv"), parse_long_csv(base, "B.csv"),
                   params=RcaParams(floors={"latency_ms": 2.0}))
    assert floored.root_causes == ["web"] and by_name(floored)["api"]["role"] == "unaffected"


def test_two_independent_branches_each_get_their_own_root() -> None:
    edges = [("web1", "db1"), ("web2", "cache2")]
    report = run(edges, {"db1": (10, 40.0), "web1": (12, 30.0), "cache2": (30, 8.0), "web2": (33, 6.0)})
    r = by_name(report)
    assert set(report.root_causes) == {"db1", "cache2"}
    assert report.ranking[0].service == "db1"  # bigger and earlier
    assert r["web1"]["caused_by"] == ["db1"] and r["web2"]["caused_by"] == ["cache2"]
    assert any("after db1" in e and "which it does not explain" in e for e in r["cache2"]["evidence_against"])
    roles = [x.role for x in report.ranking]
    assert roles == sorted(roles, key=["root_cause", "impacted", "no_data", "unaffected"].index)


def test_cycle_yields_exactly_one_root_in_the_mutually_explaining_group() -> None:
    edges = [("a", "b"), ("b", "c"), ("c", "a"), ("front", "a")]
    report = run(edges, {"a": (10, 30.0), "b": (10, 30.0), "c": (10, 30.0), "front": (12, 20.0)})
    anomalous_cycle = {"a", "b", "c"}
    assert len(report.root_causes) == 1 and report.root_causes[0] in anomalous_cycle
    r = by_name(report)
    assert r["front"]["role"] == "impacted" and r["front"]["caused_by"] == report.root_causes
    root = r[report.root_causes[0]]
    assert any("explain each other" in e for e in root["evidence_against"])


def test_cycle_where_one_member_started_first_makes_it_the_root() -> None:
    edges = [("a", "b"), ("b", "a")]
    report = run(edges, {"b": (10, 20.0), "a": (15, 20.0)})
    assert report.root_causes == ["b"]
    assert by_name(report)["a"]["caused_by"] == ["b"]


def test_target_restricts_candidates_to_its_transitive_dependencies() -> None:
    edges = [("web", "api"), ("api", "db"), ("batch", "queue"), ("other", "web")]
    report = run(edges, {"db": (10, 30.0), "api": (12, 20.0), "queue": (5, 40.0)}, target="api")
    assert {x.service for x in report.ranking} == {"api", "db"}
    assert report.target == "api" and report.root_causes == ["db"]


def test_unknown_target_is_a_config_error_naming_the_option() -> None:
    with pytest.raises(ConfigError) as exc:
        run(CHAIN, {}, target="nope")
    assert exc.value.problems[0].field == "--target" and "nope" in str(exc.value)


@pytest.mark.parametrize("seed", range(5))
def test_noisy_baselines_do_not_make_healthy_services_anomalous(seed: int) -> None:
    """Heavy noise, rare spikes: a healthy service stays unaffected; the 8-sd fault still wins."""
    services = ["web", "api", "db"]
    rng = np.random.default_rng(seed)
    win, base = make_csvs(rng, services, {"db": (30, 8.0)}, n=120, noise=10.0)
    lines = win.splitlines()
    spiky = [lines[0]] + [
        line if i % 37 else line.rsplit(",", 1)[0] + ",500" for i, line in enumerate(lines[1:], 1)
    ]  # isolated one-sample spikes must not count as an anomaly
    report = rank(CHAIN, parse_long_csv("\n".join(spiky), "M.csv"), parse_long_csv(base, "B.csv"))
    r = by_name(report)
    assert report.root_causes == ["db"]
    assert r["web"]["role"] == r["api"]["role"] == "unaffected"


def test_services_missing_from_graph_become_isolated_nodes_with_a_warning() -> None:
    report = run(CHAIN, {"db": (10, 30.0), "stray": (5, 30.0)}, extra=["stray"])
    r = by_name(report)
    assert any("not in the graph" in w and "stray" in w for w in report.warnings)
    assert r["stray"]["role"] == "root_cause"
    assert any("isolated node" in e for e in r["stray"]["evidence_against"])


def test_service_without_samples_is_no_data() -> None:
    win, base = make_csvs(np.random.default_rng(1), ["web", "api"], {"api": (10, 30.0)})
    r = by_name(rank(CHAIN, parse_long_csv(win, "M.csv"), parse_long_csv(base, "B.csv")))
    assert r["db"]["role"] == "no_data"
    assert any("1 anomalous caller depends on it: api" in e for e in r["db"]["evidence"])


def test_non_numeric_values_are_skipped_and_counted() -> None:
    text = ("timestamp,service,metric,value,host\n1,a,m,1.0,x\n2,a,m,oops,x\n3,a,m,nan,x\n"
            "bad-time,a,m,2,x\n2024-01-01T10:00:04Z,a,m,2,x\n")
    parsed = parse_long_csv(text, "M.csv")
    assert parsed.skipped_values == 2 and parsed.skipped_timestamps == 1
    assert parsed.ignored_columns == ("host",)
    ts, vals = parsed.series[("a", "m")]
    assert list(ts) == [1.0, T0 + 4] and list(vals) == [1.0, 2.0]
    report = rank([], parsed, parse_long_csv("timestamp,service,metric,value\n0,a,m,1\n", "B.csv"),
                  names=("M.csv", "B.csv"))
    assert any("M.csv: skipped 2 rows with a non-numeric value" in w for w in report.warnings)
    assert "M.csv: skipped 1 row with an unparsable timestamp" in report.warnings
    assert "M.csv: ignored column host" in report.warnings


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("timestamp,service,value\n1,a,2\n", "metric"),
        ("", "(header)"),
        ("timestamp,service,metric,value\n", "value"),
        ("timestamp,service,metric,value\n1,a,m,x\n", "value"),
    ],
)
def test_bad_csv_is_a_config_error_naming_file_and_column(text: str, field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_long_csv(text, "M.csv")
    assert exc.value.problems[0].file == "M.csv" and exc.value.problems[0].field == field


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ([], "edges"),
        ({"edges": {}}, "edges"),
        ({"edges": [{"from": "a"}]}, "edges[0].to"),
        ({"edges": [{"from": "a", "to": "b"}, {"from": "a", "to": 3}]}, "edges[1].to"),
        ({"edges": [{"from": "a", "to": "b", "weight": 1}]}, "edges[0].weight"),
    ],
)
def test_bad_graph_is_a_config_error_naming_the_field(doc: object, field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_graph(doc, "G.json")
    assert exc.value.problems[0].field == field and "G.json" in str(exc.value)


def test_graph_dedups_edges_and_drops_self_loops() -> None:
    edges = parse_graph({"edges": [{"from": "a", "to": "b"}, {"from": "a", "to": "b"}, {"from": "c", "to": "c"}]}, "G")
    assert edges == [("a", "b")]


# --- fixtures and the CLI ---------------------------------------------------------------------

CASES: dict[str, tuple[list[tuple[str, str]], dict[str, Fault], list[str]]] = {
    # name: (edges, faults, expected root causes)
    "chain_db_fault": (CHAIN, {"db": (20, 40.0), "api": (23, 30.0), "web": (26, 25.0)}, ["db"]),
    "api_fault": (CHAIN, {"api": (15, 30.0), "web": (18, 20.0)}, ["api"]),
    "cycle": ([("front", "a"), ("a", "b"), ("b", "a")], {"b": (10, 20.0), "a": (14, 20.0), "front": (16, 10.0)},
              ["b"]),
}


def write_fixture(name: str, out: Path = FIXTURES) -> Path:
    """Regenerate one fixture case: G.json, M.csv, B.csv under out/name."""
    edges, faults, _ = CASES[name]
    services = sorted({s for e in edges for s in e})
    win, base = make_csvs(np.random.default_rng(42), services, faults, n=40)
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "G.json").write_text(json.dumps({"edges": [{"from": a, "to": b} for a, b in edges]}, indent=1) + "\n")
    (d / "M.csv").write_text(win)
    (d / "B.csv").write_text(base)
    return d


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_cases_rank_their_root_cause_first(name: str) -> None:
    d = FIXTURES / name
    result = rca_command(d / "G.json", d / "M.csv", d / "B.csv", None)
    assert result["root_causes"] == CASES[name][2]
    assert result["ranking"][0]["service"] == CASES[name][2][0]


def test_fixtures_match_the_generator(tmp_path: Path) -> None:
    for name in CASES:
        fresh = write_fixture(name, tmp_path)
        for f in ("G.json", "M.csv", "B.csv"):
            assert (fresh / f).read_text() == (FIXTURES / name / f).read_text(), f"{name}/{f}"


def test_cli_json_shape() -> None:
    d = FIXTURES / "chain_db_fault"
    res = CliRunner().invoke(rca_app, ["--graph", str(d / "G.json"), "--metrics", str(d / "M.csv"),
                                       "--baseline", str(d / "B.csv"), "--target", "web", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out) == {"ranking", "root_causes", "target", "warnings"}
    assert [r["service"] for r in out["ranking"]] == ["db", "api", "web"]
    first = out["ranking"][0]
    assert {"service", "score", "role", "evidence", "evidence_against"} <= set(first)
    assert isinstance(first["score"], float) and all(isinstance(e, str) for e in first["evidence"])


def test_cli_prints_a_readable_ranking_without_json() -> None:
    d = FIXTURES / "api_fault"
    res = CliRunner().invoke(rca_app, ["--graph", str(d / "G.json"), "--metrics", str(d / "M.csv"),
                                       "--baseline", str(d / "B.csv")])
    assert res.exit_code == 0 and res.stdout.startswith("1. api  root_cause")


@pytest.mark.parametrize("breakage", ["missing_file", "bad_json", "missing_column", "bad_target"])
def test_cli_exits_2_on_bad_input_naming_the_file(tmp_path: Path, breakage: str) -> None:
    d = FIXTURES / "chain_db_fault"
    g, m, b = d / "G.json", d / "M.csv", d / "B.csv"
    extra: list[str] = []
    if breakage == "missing_file":
        m = tmp_path / "nope.csv"
    elif breakage == "bad_json":
        g = tmp_path / "G.json"
        g.write_text("{not json")
    elif breakage == "missing_column":
        b = tmp_path / "B.csv"
        b.write_text("timestamp,service,value\n1,db,3\n")
    else:
        extra = ["--target", "ghost"]
    res = CliRunner().invoke(rca_app, ["--graph", str(g), "--metrics", str(m), "--baseline", str(b), "--json",
                                       *extra])
    assert res.exit_code == 2
    named = {"missing_file": "nope.csv", "bad_json": "G.json", "missing_column": "B.csv:1: metric: missing column",
             "bad_target": "--target"}[breakage]
    assert named in res.stderr
    assert res.stdout == ""


if __name__ == "__main__":  # regenerate the fixtures: python tests/unit/test_rca.py
    for case in CASES:
        print(write_fixture(case))


def test_ongoing_counts_only_a_departure_still_held_at_the_end_of_the_window() -> None:
    """Live use: api departed early in the window and recovered; web departs at the end. Offline
    api explains web; with ``ongoing`` a recovered dependency explains nothing and web is its own
    root cause, its onset the start of the stretch that reaches the end."""
    rng = np.random.default_rng(3)
    head = "timestamp,service,metric,value\n"
    base, win = [], []
    for s in ("web", "api"):
        b = 50 + 2 * rng.standard_normal(60)
        w = 50 + 2 * rng.standard_normal(60)
        if s == "api":
            w[5:15] += 80  # an episode that is over
        else:
            w[50:] += 80  # still going
        base += [f"{T0 - 3600 + i},{s},latency_ms,{v:.4f}" for i, v in enumerate(b)]
        win += [f"{T0 + i},{s},latency_ms,{v:.4f}" for i, v in enumerate(w)]
    window = parse_long_csv(head + "\n".join(win) + "\n", "M.csv")
    baseline = parse_long_csv(head + "\n".join(base) + "\n", "B.csv")
    offline = by_name(rank([("web", "api")], window, baseline, target="web"))
    assert offline["web"]["role"] == "impacted" and offline["web"]["caused_by"] == ["api"]
    live = by_name(rank([("web", "api")], window, baseline, target="web", params=RcaParams(ongoing=True)))
    assert live["web"]["role"] == "root_cause" and live["web"]["onset"] == T0 + 50
    assert live["api"]["role"] != "root_cause" and not live["api"]["anomalous"]


def test_epoch_milliseconds_are_read_as_milliseconds_and_rank_like_seconds() -> None:
    """A recording in Prometheus' unit (epoch ms) ranks as the same one in seconds: leads of
    seconds, not thousands of them, and no crash naming the year 55,000."""
    win, base = make_csvs(np.random.default_rng(3), ["api", "web"], {"api": (10, 20.0), "web": (15, 20.0)})

    def in_ms(text: str) -> str:
        head, *rows = text.strip().split("\n")
        return "\n".join([head, *(f"{int(round(float(r.split(',', 1)[0]) * 1000))},{r.split(',', 1)[1]}"
                                  for r in rows)]) + "\n"

    edges = [("web", "api")]
    seconds = rank(edges, parse_long_csv(win, "M.csv"), parse_long_csv(base, "B.csv"))
    millis = rank(edges, parse_long_csv(in_ms(win), "M.csv"), parse_long_csv(in_ms(base), "B.csv"))
    assert millis.root_causes == seconds.root_causes == ["api"]
    assert [(r.service, r.onset, r.evidence) for r in millis.ranking] == \
        [(r.service, r.onset, r.evidence) for r in seconds.ranking]
    one = parse_long_csv("timestamp,service,metric,value\n1704103200000,a,m,1\n", "M.csv")
    assert one.series[("a", "m")][0][0] == T0


def test_timestamps_beyond_any_calendar_are_skipped_as_bad_timestamps() -> None:
    parsed = parse_long_csv("timestamp,service,metric,value\n1e300,a,m,1\n-1e300,a,m,1\n5,a,m,2\n", "M.csv")
    assert parsed.skipped_timestamps == 2 and list(parsed.series[("a", "m")][0]) == [5.0]


def test_a_graph_nested_deeper_than_recursion_allows_exits_2_naming_it(tmp_path: Path) -> None:
    from autonomic.errors import ConfigError

    graph = tmp_path / "deep.json"
    graph.write_text('{"edges": ' + "[" * 50_000 + "]" * 50_000 + "}")
    with pytest.raises(ConfigError, match="nested too deeply"):
        rca_command(graph, tmp_path / "m.csv", tmp_path / "b.csv", None)


@pytest.mark.parametrize(("consecutive", "said"), [(1, "for 1 sample "), (2, "for 2 samples ")])
def test_an_unaffected_service_says_how_many_samples_it_looked_for_in_words(consecutive: int, said: str) -> None:
    win, base = make_csvs(np.random.default_rng(7), ["api", "db", "web"], {"api": (10, 30.0), "web": (14, 20.0)})
    report = rank(CHAIN, parse_long_csv(win, "M.csv"), parse_long_csv(base, "B.csv"),
                  params=RcaParams(consecutive=consecutive))
    against = by_name(report)["db"]["evidence_against"]
    assert any(e.startswith(f"no metric left its baseline band {said}") for e in against), against


def test_a_field_beyond_the_csv_modules_limit_is_a_config_error_naming_the_line() -> None:
    """A cell longer than csv's limit (131,072 characters) is bad input naming the row, not csv.Error."""
    text = "timestamp,service,metric,value\n1,a,m,1\n2,a,m," + "9" * 200_000 + "\n"
    with pytest.raises(ConfigError) as exc:
        parse_long_csv(text, "M.csv")
    problem = exc.value.problems[0]
    assert (problem.file, problem.line) == ("M.csv", 3) and "field larger than field limit" in problem.message
