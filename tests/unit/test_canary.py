"""Canary judgement on metric sets whose answer is known: identical, clearly worse, clearly
better, too few samples; and rollouts that pass, trip a trigger, or stop marginal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autonomic.errors import ConfigError, TerminalActuatorError
from autonomic.execute.canary import JudgeConfig, RolloutPlan, judge, read_samples, rollout

CFG = JudgeConfig.model_validate({
    "metrics": [
        {"metric": "error_rate", "harm": "increase", "group": "errors", "tolerance": 0.1, "critical": True},
        {"metric": "latency_ms", "harm": "increase", "group": "latency", "tolerance": 0.2},
        {"metric": "throughput", "harm": "decrease", "group": "latency", "tolerance": 0.1},
    ],
    "groups": {"errors": 2, "latency": 1},
})


def _data(seed: int, err: float = 0.01, lat: float = 100, thr: float = 50, n: int = 60) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"error_rate": rng.normal(err, err * 0.1, n), "latency_ms": rng.normal(lat, 5, n),
            "throughput": rng.normal(thr, 2, n)}


def test_identical_samples_pass_with_full_score() -> None:
    base = _data(1)
    result = judge(base, {k: v.copy() for k, v in base.items()}, CFG)
    assert result.verdict == "pass" and result.score == 100.0
    assert all(m.verdict == "pass" and m.p_value is not None for m in result.metrics)


def test_same_distribution_different_draws_pass() -> None:
    assert judge(_data(1), _data(2), CFG).verdict == "pass"


def test_clearly_worse_error_rate_fails_as_critical_with_every_value_reported() -> None:
    result = judge(_data(1), _data(2, err=0.05), CFG)
    assert result.verdict == "fail" and "critical" in result.reason
    err = next(m for m in result.metrics if m.metric == "error_rate")
    assert err.verdict == "fail" and err.effect is not None and err.effect > 1.0
    assert err.p_value is not None and err.p_value < 0.001
    assert err.n_baseline == 60 and err.baseline_median is not None and err.canary_mean is not None


def test_clearly_better_is_not_harm() -> None:
    result = judge(_data(1), _data(2, err=0.001, lat=50, thr=80), CFG)
    assert result.verdict == "pass"


def test_worse_latency_alone_is_marginal_or_fail_by_weight() -> None:
    result = judge(_data(1), _data(2, lat=200), CFG)
    # errors group 100 (weight 2), latency group 50 (weight 1) -> 83.3: between 75 and 95
    assert result.verdict == "marginal" and result.score == pytest.approx(83.333, abs=0.01)


def test_too_few_samples_fail_closed() -> None:
    result = judge(_data(1, n=5), _data(2, n=5), CFG)
    assert result.verdict == "fail"
    assert all(m.verdict == "nodata" for m in result.metrics)


def test_a_missing_metric_is_nodata_not_a_pass() -> None:
    canary = _data(2)
    del canary["latency_ms"]
    result = judge(_data(1), canary, CFG)
    lat = next(m for m in result.metrics if m.metric == "latency_ms")
    assert lat.verdict == "nodata" and result.verdict != "pass"


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="marginal_score"):
        JudgeConfig.model_validate({"metrics": [{"metric": "x"}], "pass_score": 50, "marginal_score": 80})
    with pytest.raises(ValueError, match="harm"):
        JudgeConfig.model_validate({"metrics": [{"metric": "x", "harm": "sideways"}]})


def test_csv_reading_drops_non_numbers_and_names_a_missing_column(tmp_path: Path) -> None:
    good = tmp_path / "b.csv"
    good.write_text("timestamp,metric,value\n1,x,1.5\n2,x,nan\n3,x,oops\n4,y,inf\n5,x,2\n")
    assert read_samples(good) == {"x": [1.5, 2.0]}
    bad = tmp_path / "c.csv"
    bad.write_text("timestamp,name,value\n1,x,1\n")
    with pytest.raises(ConfigError, match="c.csv:1: metric: missing column 'metric'"):
        read_samples(bad)


def test_a_file_that_is_not_utf8_text_is_a_config_error_naming_it(tmp_path: Path) -> None:
    binary = tmp_path / "canary.csv"
    binary.write_bytes(b"\xff\xfe\x00metric,value\n")
    with pytest.raises(ConfigError, match="canary.csv: .*cannot read"):
        read_samples(binary)


def _plan(**kw: object) -> RolloutPlan:
    return RolloutPlan.model_validate({"steps": [1, 25, 100], "wait_s": 0, "judge": CFG.model_dump(), **kw})


def test_a_healthy_rollout_reaches_100_percent() -> None:
    weights: list[int] = []
    reports = list(rollout(_plan(), weights.append, lambda: (_data(1), _data(2)), lambda s: None))
    assert [r.weight for r in reports] == [1, 25, 100] and all(r.verdict == "pass" for r in reports)
    assert weights == [1, 25, 100]


def test_a_tripped_trigger_rolls_back_to_zero_and_stops() -> None:
    weights: list[int] = []
    plan = _plan(triggers=[{"metric": "error_rate", "max": 0.01 * 1.5}])
    calls = iter([(_data(1), _data(2)), (_data(1), _data(3, err=0.05))])
    reports = list(rollout(plan, weights.append, lambda: next(calls), lambda s: None))
    assert [r.verdict for r in reports] == ["pass", "fail"] and "trigger" in reports[-1].reason
    assert weights == [1, 25, 0]


def test_a_step_that_cannot_be_judged_fails_closed_back_to_zero() -> None:
    """The metrics for a step are not there (collect raises): the canary does not stay at its
    share unjudged; the weight goes back to 0 and the report says why."""
    weights: list[int] = []
    calls = iter([(_data(1), _data(2))])

    def collect() -> Any:
        try:
            return next(calls)
        except StopIteration:
            raise RuntimeError("prometheus: connection refused") from None

    reports = list(rollout(_plan(), weights.append, collect, lambda s: None))
    assert [r.verdict for r in reports] == ["pass", "fail"] and weights == [1, 25, 0]
    assert reports[-1].reason == "could not judge at 25%: prometheus: connection refused; rolled back to 0"


def test_a_step_whose_weight_cannot_be_set_back_raises_its_own_error_noting_the_refusal() -> None:
    weights: list[int] = []

    def set_weight(w: int) -> None:
        if w == 25:
            raise RuntimeError("traffic API: 500")
        if w == 0:
            raise RuntimeError("traffic API: 500 again")
        weights.append(w)

    with pytest.raises(RuntimeError) as err:
        list(rollout(_plan(), set_weight, lambda: (_data(1), _data(2)), lambda s: None))
    assert str(err.value) == "traffic API: 500" and weights == [1]
    assert err.value.__notes__ == ["not rolled back to 0 either: traffic API: 500 again"]


def test_a_latency_increase_trigger_uses_p95_against_the_baseline() -> None:
    weights: list[int] = []
    plan = _plan(triggers=[{"metric": "latency_ms", "max_increase": 0.2}])
    reports = list(rollout(plan, weights.append, lambda: (_data(1), _data(2, lat=150)), lambda s: None))
    assert reports[-1].verdict == "fail" and weights[-1] == 0


def test_plan_steps_must_increase() -> None:
    with pytest.raises(ValueError, match="steps"):
        _plan(steps=[50, 5])


def test_the_cli_judges_csv_files_and_exits_by_verdict(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from autonomic.cli import app

    def write(path: Path, data: dict[str, np.ndarray]) -> Path:
        rows = ["metric,value"] + [f"{k},{v}" for k, vs in data.items() for v in vs]
        path.write_text("\n".join(rows) + "\n")
        return path

    cfg = tmp_path / "judge.yaml"
    cfg.write_text("metrics:\n  - {metric: error_rate, harm: increase, tolerance: 0.1}\n"
                   "  - {metric: latency_ms, harm: increase, tolerance: 0.2}\n")
    base = write(tmp_path / "b.csv", _data(1))
    good = write(tmp_path / "c.csv", _data(2))
    bad = write(tmp_path / "d.csv", _data(2, err=0.05, lat=300))
    runner = CliRunner()
    ok = runner.invoke(app, ["canary", "judge", "--baseline", str(base), "--canary", str(good),
                             "--config", str(cfg), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["verdict"] == "pass"
    worse = runner.invoke(app, ["canary", "judge", "--baseline", str(base), "--canary", str(bad),
                                "--config", str(cfg), "--json"])
    assert worse.exit_code == 1 and json.loads(worse.stdout)["verdict"] == "fail"
    cfg.write_text("metrics:\n  - {metric: error_rate, harm: up}\n")
    broken = runner.invoke(app, ["canary", "judge", "--baseline", str(base), "--canary", str(good),
                                 "--config", str(cfg)])
    assert broken.exit_code == 2 and "judge.yaml:2: metrics[0].harm" in broken.stderr
    cfg.write_text("metrics:\n  - {metric: error_rate, harm: increase, tolerence: 0.1}\npass_scor: 90\n")
    typo = runner.invoke(app, ["canary", "judge", "--baseline", str(base), "--canary", str(good),
                               "--config", str(cfg)])  # the rules' own misspelt keys: the key meant is named
    assert typo.exit_code == 2 and typo.stderr.splitlines() == [
        f"{cfg}:2: metrics[0].tolerence: unknown field 'tolerence'; did you mean 'tolerance'?",
        f"{cfg}:3: pass_scor: unknown field 'pass_scor'; did you mean 'pass_score'?"]


def test_a_rollout_moves_real_traffic_weights_through_the_http_actuator(tmp_path: Path) -> None:
    """The rollout drives a real HTTP admin endpoint (a local server recording each weight)
    through the http actuator, and rolls back to 0 when the canary turns bad. A pause stops a
    rollout before its next weight (before, the setter applied weights whatever the kill switch
    said)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from autonomic.clock import SystemClock
    from autonomic.execute.canary import actuator_weight_setter
    from autonomic.execute.http import HttpActuator
    from autonomic.protocols import ActuatorContext, Target

    weights: list[int] = []

    class Admin(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_PUT(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            weights.append(int(body["canary_percent"]))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Admin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        actuator = HttpActuator(ActuatorContext(clock=SystemClock(), state_dir=tmp_path))
        target = Target(service="shop", binding=HttpActuator.Binding.model_validate(
            {"base_url": f"http://127.0.0.1:{server.server_address[1]}"}))
        set_weight = actuator_weight_setter(actuator, target, lambda w: {
            "method": "PUT", "path": "/traffic", "json": {"canary_percent": w}}, "rollout-1", paused=lambda: None)
        calls = iter([(_data(1), _data(2)), (_data(1), _data(3, err=0.05))])
        reports = list(rollout(_plan(), set_weight, lambda: next(calls), lambda s: None))
        # a pause set after the first step: the weight stays where it is, even on a failure
        pause: list[str] = []
        held = actuator_weight_setter(actuator, target, lambda w: {
            "method": "PUT", "path": "/traffic", "json": {"canary_percent": w}}, "rollout-2",
            paused=lambda: pause[0] if pause else None)
        calls = iter([(_data(1), _data(2))])

        def collect() -> Any:
            pause.append("pause:global by person:ops (deploy freeze)")
            return next(calls)

        with pytest.raises(TerminalActuatorError, match="canary weight not set to 25: automation is paused"):
            list(rollout(_plan(), held, collect, lambda s: None))
    finally:
        server.shutdown()
        server.server_close()
    assert [r.verdict for r in reports] == ["pass", "fail"]
    assert weights == [1, 25, 0, 1]


@pytest.mark.parametrize("weight", [float("inf"), float("nan"), -1.0])
def test_a_group_weight_that_is_not_a_finite_non_negative_number_is_refused_naming_the_group(weight: float) -> None:
    """An infinite weight made the score inf/inf: a "fail" whose reason read "score nan < 75"."""
    with pytest.raises(ValueError, match=r"groups\.errors") as exc:
        JudgeConfig.model_validate({"metrics": [{"metric": "x", "group": "errors"}], "groups": {"errors": weight}})
    assert "finite" in str(exc.value) or "greater than or equal to 0" in str(exc.value)


def test_a_csv_saved_with_a_byte_order_mark_reads_its_first_column(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with a BOM: the first column is still ``metric``, as
    ``autonomic detect`` and ``replay`` read it."""
    bom = tmp_path / "b.csv"
    bom.write_text("\ufeffmetric,value\nx,1.5\nx,2\n", encoding="utf-8")
    assert read_samples(bom) == {"x": [1.5, 2.0]}


def test_a_field_beyond_the_csv_modules_limit_is_a_config_error_naming_the_line(tmp_path: Path) -> None:
    huge = tmp_path / "c.csv"
    huge.write_text("metric,value\nx,1\nx," + "9" * 200_000 + "\n")
    with pytest.raises(ConfigError, match=r"c.csv:3: .*field larger than field limit"):
        read_samples(huge)


def test_a_config_whose_every_used_group_weighs_zero_is_refused_naming_groups() -> None:
    """Every judgement would score 0 and fail, whatever the canary did; a weight of 0 for one
    group among others stays allowed (that group is only reported)."""
    from autonomic.execute.canary import JudgeConfig

    metrics = [{"metric": "error_rate", "group": "errors"}, {"metric": "latency_ms", "group": "latency"}]
    with pytest.raises(ValueError, match=r"groups: every group the metrics are in weighs 0 \(errors, latency\)"):
        JudgeConfig.model_validate({"metrics": metrics, "groups": {"errors": 0, "latency": 0, "unused": 1}})
    assert JudgeConfig.model_validate({"metrics": metrics, "groups": {"errors": 0}}).groups == {"errors": 0}
