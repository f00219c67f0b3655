"""The NAB scorer in benchmarks/nab.py: the README's worked example, and the aggregate counts
that experiments read (benchmarks/nab-experiments.md)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

NAB_PY = Path(__file__).resolve().parents[2] / "benchmarks" / "nab.py"


@pytest.fixture(scope="module")
def nab() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nab_bench", NAB_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["nab_bench"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_the_scorer_reproduces_the_readme_example_and_brute_force(nab: ModuleType) -> None:
    nab.selfcheck(None)  # raises AssertionError on any mismatch


def test_counts_report_windows_found_false_alarms_timing_and_candidates(nab: ModuleType) -> None:
    # N = 100 (probation 15); windows [40, 49] and [70, 79]
    scores = np.zeros(100)
    scores[10] = 0.9  # probationary: not counted anywhere
    scores[20] = 0.9  # a false alarm before any window
    scores[40] = 0.9  # the first row of window 1: value exactly 1
    scores[45] = 0.9  # later in window 1: adds nothing
    scores[75] = 0.2  # window 2: a candidate below theta
    scores[90] = 0.9  # a false alarm after window 2
    got = nab.counts([nab.ScoredFile(scores, [(40, 49), (70, 79)])], 0.5)
    assert got == {"theta": 0.5, "found": 1, "false_alarms": 2, "mean_first_value": 1.0, "candidates": 2}


def test_a_detection_at_a_windows_middle_is_worth_about_086(nab: ModuleType) -> None:
    scores = np.zeros(200)
    scores[150] = 1.0  # window [100, 199]: row 150 is its middle
    got = nab.counts([nab.ScoredFile(scores, [(100, 199)])], 1.0)
    expected = nab.sigmoid(-50 / 100) / nab.S_MAX
    assert got["found"] == 1 and math.isclose(got["mean_first_value"], round(expected, 3))
    assert 0.85 < got["mean_first_value"] < 0.87
