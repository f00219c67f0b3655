"""The soak benchmark's judgement of what each fault's outcome should be (benchmarks/soak.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from autonomic.demo.scenario import Result

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def _soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak_benchmark", SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("soak_benchmark", module)
    spec.loader.exec_module(module)
    return module


def test_slowness_is_rolled_back_the_first_time_and_handed_to_a_person_after_that_rollback() -> None:
    """The demo's slowness remedy is the wrong one on purpose: once rolled back on web, its record
    there keeps it under the demo's threshold (above its floor: a person is asked to approve it,
    which the demo's outcome calls escalated, as before when it was denied and escalated). The soak
    expected a rollback every time, and counted each of those escalations as the engine missing."""
    soak = _soak()
    assert soak.expected_outcome("latency", "web", []) == "rolled_back"
    earlier = [Result("latency@web", "web", "rolled_back", outcome="rolled_back")]
    assert soak.expected_outcome("latency", "web", earlier) == "escalated"
    not_rolled_back = [Result("latency@web", "web", "rolled_back", outcome="failed")]
    assert soak.expected_outcome("latency", "web", not_rolled_back) == "rolled_back"


def test_the_other_faults_expect_the_same_outcome_whatever_came_before() -> None:
    soak = _soak()
    past = [Result("latency@web", "web", "rolled_back", outcome="rolled_back"),
            Result("conn_leak@web", "web", "prevented", outcome="escalated")]
    assert [soak.expected_outcome(f, "web", past) for f in ("crash", "memory_leak", "conn_leak")] == [
        "resolved", "prevented", "prevented"]
    assert soak.expected_outcome("error_spike", "api", past) == "escalated"


def test_a_pool_leak_fills_any_pool_in_the_time_the_demos_fills_its_pool_of_50() -> None:
    """The leak is sized to the pool the engine has raised: its rate as well as its limit, so the
    leak ends within the demo's verification window at every size (before, a fixed 5 a second
    took 32 s to fill a pool of 179)."""
    soak = _soak()
    assert soak.pool_leak(50) == {"rate": 5.0, "limit": 38}
    for size in (60, 86, 149, 179, 200):
        leak = soak.pool_leak(size)
        assert leak["limit"] + 10 == round(0.96 * size)  # 96% in use with the traffic's 10
        assert abs(leak["limit"] / leak["rate"] - 7.6) < 0.01
