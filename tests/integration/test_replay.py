"""``autonomic replay``: the whole loop in shadow over a recorded CSV, through the real CLI."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from autonomic.cli import app

T0 = 1_700_000_000


def _recording(path: Path) -> Path:
    """api leaks memory from sample 200; web is down for samples 300-305; 5 s apart."""
    rng = random.Random(1)
    rows = ["timestamp,service,metric,value"]
    for i in range(400):
        t = T0 + i * 5
        rows.append(f"{t},api,memory_percent,{40 + rng.gauss(0, 0.5) + max(0, i - 200) * 0.25:.2f}")
        rows.append(f"{t},api,up,1")
        rows.append(f"{t},web,up,{0 if 300 <= i < 306 else 1}")
        rows.append(f"{t},web,error_rate,{0.01 + rng.random() * 0.005:.4f}")
    rows.append(f"{T0},web,error_rate,not-a-number")
    path.write_text("\n".join(rows) + "\n")
    return path


def _run(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_replay_reports_what_the_engine_would_have_done_and_executes_nothing(tmp_path: Path) -> None:
    code, out, err = _run("replay", _recording(tmp_path / "rec.csv"), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["samples"] == 1600 and summary["skipped_rows"] == 1
    by_service = {d["service"]: d for d in summary["decisions"]}
    assert by_service["api"]["cause"] == "memory" and by_service["api"]["would_have"] == "approved"
    assert by_service["api"]["action"]["params"]["op"] == "graceful_restart"
    assert by_service["web"]["cause"] == "down" and by_service["web"]["action"]["params"]["op"] == "restart"
    api_inc = next(i for i in summary["incidents"] if i["service"] == "api")
    assert api_inc["kind"] == "forecast" and api_inc["opened_at"] > T0 + 200 * 5
    assert summary["actions_executed"] == 0 and summary["would_have_acted"] == 2
    assert not (tmp_path / ".autonomic").exists()


def test_replays_text_summary_says_how_many_rows_it_skipped_and_why(tmp_path: Path) -> None:
    """Before, only --json counted them: the table read as if every row had been played."""
    code, out, err = _run("replay", _recording(tmp_path / "rec.csv"))
    assert code == 0, err
    assert "1 row of " in out and "rec.csv skipped: a value that is not a finite number" in out, out


def test_replays_text_summary_counts_one_incident_and_one_action_in_the_singular(tmp_path: Path) -> None:
    """Before: "1 incidents, 1 times it would have acted". Only web goes down here (samples
    300-305); api stays flat."""
    rec = tmp_path / "rec.csv"
    rec.write_text("\n".join(["timestamp,service,metric,value",
                              *(f"{T0 + i * 5},web,up,{0 if 300 <= i < 306 else 1}" for i in range(400))]) + "\n")
    code, out, err = _run("replay", rec)
    assert code == 0, err
    assert "400 samples over 1995 s, 1 incident, 1 time it would have acted (nothing was executed)" in out, out


def test_replay_lists_no_gate_as_holding_back_a_decision_it_would_have_approved(tmp_path: Path) -> None:
    """The shadow gate, which denies every decision in a replay, is not what held one back: a
    decision that would have been approved has nothing in ``held back by``."""
    code, out, err = _run("replay", _recording(tmp_path / "rec.csv"), "--json")
    assert code == 0, err
    approved = [d for d in json.loads(out)["decisions"] if d["would_have"] == "approved"]
    assert len(approved) == 2
    assert [d["held_back_by"] for d in approved] == [[], []]


def test_replay_with_a_config_never_starts_its_services_even_where_it_turns_shadow_off(tmp_path: Path) -> None:
    """The config binds a real process actuator and turns shadow off for web: replay still
    starts nothing and runs nothing; the web decision shows what the policy would allow."""
    marker = tmp_path / "started"
    touch = {"process": {"command": [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]}}
    cfg = {
        "engine": {"interval_s": 5, "state_dir": str(tmp_path / "state"), "host_metrics": False},
        "services": [{"name": "web", "actuators": touch}, {"name": "api", "actuators": touch}],
        "policy": {"autonomy": "auto", "services": {"web": {"shadow": False}, "api": {"autonomy": "approve"}}},
    }
    path = tmp_path / "autonomic.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, out, err = _run("replay", _recording(tmp_path / "rec.csv"), "-c", path, "--json")
    assert code == 0, err
    summary = json.loads(out)
    web = next(d for d in summary["decisions"] if d["service"] == "web")
    api = next(d for d in summary["decisions"] if d["service"] == "api")
    assert web["would_have"] == "approved"
    assert api["would_have"] == "needs_approval"  # approve autonomy: it would have asked a person
    assert summary["actions_executed"] == 0 and not marker.exists()
    # nor is the config's state_dir made (run as root before the engine's first start, it was
    # made root's and 0700, and the engine's own user could not start there)
    assert not (tmp_path / "state").exists()


def test_replay_with_a_config_passes_over_a_remedy_the_service_cannot_carry_out_as_the_engine_does(
    tmp_path: Path,
) -> None:
    """api binds no process actuator: the engine would never restart it, so the replay does not
    say it would have (before, replay took every pattern as runnable and showed a graceful
    restart of api approved). web, bound, still would have been restarted. Without a config the
    recording's services bind nothing, and the summary says their remedies were assumed runnable."""
    cfg = {
        "engine": {"interval_s": 5, "state_dir": str(tmp_path / "state"), "host_metrics": False},
        "services": [{"name": "web", "actuators": {"process": {"command": [sys.executable, "-c", "pass"]}}},
                     {"name": "api", "actuators": {"shell": {"runbooks": {"rotate": ["true"]}}}}],
        "policy": {"autonomy": "auto"},
    }
    path = tmp_path / "autonomic.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, out, err = _run("replay", _recording(tmp_path / "rec.csv"), "-c", path, "--json")
    assert code == 0, err
    summary = json.loads(out)
    by_service = {d["service"]: d for d in summary["decisions"]}
    assert by_service["api"]["action"] is None and by_service["api"]["would_have"] != "approved"
    assert by_service["api"]["pattern"] == "memory-leak-graceful-restart"
    assert by_service["web"]["would_have"] == "approved" and by_service["web"]["action"]["params"]["op"] == "restart"
    assert summary["would_have_acted"] == 1 and summary["bindings_checked"] is True
    code, out, err = _run("replay", _recording(tmp_path / "rec.csv"), "--json")
    assert code == 0, err
    assert json.loads(out)["bindings_checked"] is False and json.loads(out)["would_have_acted"] == 2


def test_replay_neither_reads_nor_writes_the_live_engines_detector_checkpoint(tmp_path: Path) -> None:
    """A replay with the production config, anomaly detection on: the live engine's learned
    state in state_dir is left byte for byte, and the replay finds the recording's own anomaly."""
    state = tmp_path / "state"
    state.mkdir()
    live = state / "detectors.json"
    live.write_text('{"saved_at": 1, "detectors": {"anomaly": {"families": []}}}')
    cfg = {
        "engine": {"interval_s": 60, "state_dir": str(state), "host_metrics": False, "checkpoint_s": 60},
        "services": [{"name": "api", "anomalies": [{"metric": "latency_ms"}]}],
    }
    path = tmp_path / "autonomic.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rng = random.Random(2)
    rows = ["timestamp,service,metric,value"]
    rows += [f"{T0 + i * 60},api,latency_ms,{100 + rng.gauss(0, 2) + (60 if i >= 300 else 0):.2f}" for i in range(360)]
    (tmp_path / "lat.csv").write_text("\n".join(rows) + "\n")
    code, out, err = _run("replay", tmp_path / "lat.csv", "-c", path, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert [(i["service"], i["kind"]) for i in summary["incidents"]] == [("api", "anomaly")]
    assert live.read_text() == '{"saved_at": 1, "detectors": {"anomaly": {"families": []}}}'
    assert sorted(p.name for p in state.glob("detectors*")) == ["detectors.json"]


def test_replay_bad_input_names_the_file_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,service,value\n1,web,2\n")
    code, _, err = _run("replay", bad)
    assert code == 2 and "bad.csv" in err and "metric" in err
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp,service,metric,value\n")
    code, _, err = _run("replay", empty)
    assert code == 2 and "empty.csv" in err and "no usable rows" in err
    code, _, err = _run("replay", bad, "--interval", "0")
    assert code == 2 and "--interval" in err


def test_replay_without_a_config_names_a_recorded_service_name_no_config_could_hold(tmp_path: Path) -> None:
    odd = tmp_path / "odd.csv"
    odd.write_text("timestamp,service,metric,value\n1,web,up,1\n2,w\u00e9b,up,0\n3,api.v2,up,0\n")
    code, _, err = _run("replay", odd)
    assert code == 2, err
    assert err.splitlines() == [
        f"{odd}: service: {name!r} is not a service name autonomic accepts (lowercase letters, digits, _ and -, "
        "first a letter or digit, at most 63): rename it in the recording" for name in ("api.v2", "w\u00e9b")]


def test_replay_refuses_a_recording_too_long_for_its_interval_instead_of_running_for_days(tmp_path: Path) -> None:
    # one row from years before the rest (a stray epoch; one in milliseconds is read as such)
    stray = tmp_path / "stray.csv"
    stray.write_text("timestamp,service,metric,value\n1000000000,web,up,1\n1700000000,web,up,1\n"
                     "1700000005,web,up,1\n")
    code, _, err = _run("replay", stray)
    assert code == 2 and "stray.csv" in err and "Unix seconds" in err and "--interval" in err
    short = tmp_path / "short.csv"
    short.write_text("timestamp,service,metric,value\n1700000000,web,up,1\n1700000060,web,up,1\n")
    code, _, err = _run("replay", short, "--interval", "1e-9")
    assert code == 2 and "--interval" in err


def test_replay_table_names_the_pattern_behind_each_decision(tmp_path: Path) -> None:
    """The table, like --json, says which pattern each decision came from: a pattern author
    replays to see whether their pattern or another one took the incident."""
    code, out, err = _run("replay", _recording(tmp_path / "rec.csv"))
    assert code == 0, err
    assert "pattern" in out.splitlines()[2]  # the header row
    assert "memory-leak-graceful-restart" in out and "process-down-restart" in out


def test_replay_with_a_config_restarts_a_systemd_unit_with_or_without_a_probe_as_the_live_engine_would(
    tmp_path: Path,
) -> None:
    """web is run by systemd: with a probe in the config, the replay says its unit would have been
    restarted (verified by the probe); without one (its death seen in the recording's up alone, as
    the live engine samples it from the unit's state) too, verified by that up (before, the restart,
    which only the probe could verify, was passed over)."""
    def replay(web: dict[str, object]) -> dict[str, object]:
        cfg = {"engine": {"interval_s": 5, "state_dir": str(tmp_path / "state"), "host_metrics": False},
               "services": [{"name": "web", "actuators": {"systemd": {"unit": "web.service"}}, **web}, {"name": "api"}],
               "policy": {"autonomy": "auto"}}
        path = tmp_path / "autonomic.yaml"
        path.write_text(yaml.safe_dump(cfg))
        code, out, err = _run("replay", _recording(tmp_path / "rec.csv"), "-c", path, "--json")
        assert code == 0, err
        return next(d for d in json.loads(out)["decisions"] if d["service"] == "web")

    probed = replay({"probes": [{"type": "http", "url": "http://127.0.0.1:1/health"}]})
    assert probed["pattern"] == "systemd-down-restart" and probed["would_have"] == "approved"
    assert probed["action"]["type"] == "systemd" and probed["action"]["params"]["op"] == "restart"
    bare = replay({})
    assert bare["pattern"] == "systemd-down-restart" and bare["would_have"] == "approved"
    assert bare["action"]["type"] == "systemd" and bare["action"]["params"]["op"] == "restart"


def test_replay_of_a_field_beyond_the_csv_modules_limit_exits_2_naming_the_file_and_line(tmp_path: Path) -> None:
    huge = tmp_path / "huge.csv"
    huge.write_text(f"timestamp,service,metric,value\n{T0},web,up,1\n{T0 + 5},web,up,{'1' * 200_000}\n")
    code, _, err = _run("replay", huge, "--json")
    assert code == 2 and "huge.csv:3" in err and "field larger than field limit" in err, err
