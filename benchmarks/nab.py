"""NAB benchmark: run ``autonomic detect`` over the NAB data and score it exactly as
``../shared/nab/README.md`` specifies.

    python benchmarks/nab.py --data ../shared/nab --json

prints ``{"standard": ..., "reward_low_FP_rate": ..., "reward_low_FN_rate": ..., "files": 51}``.
The detector only ever sees ``data/**.csv`` (it runs before the labels are read);
``--selfcheck`` verifies the scorer on the README's worked example and the null detector.

For experiments (``benchmarks/nab-experiments.md`` logs every configuration tried):
``--set '{"spatial_confirm": 1.3}'`` changes the detect configuration for this run only, and
``--counts`` adds aggregate counts at each profile's best theta: windows found, false alarms,
the mean value of the first detections in found windows (1 = a window's first row; about 0.86
at its middle, where the labelled point is) and ``candidates``, the windows with any non-zero
score after probation. Counts only, never which file or window: choices made by looking at
individual windows would fit the benchmark.

``--half design`` or ``--half holdout`` scores a fixed half of the files only (files sorted by
their relative path ``<category>/<file>.csv``; design = even positions 0, 2, ..., holdout = odd
positions): the normalised score over that half's windows, with theta optimised on that half.
Detection still runs over every file (each series is scored independently), so a half's scores
are exactly those of a full run. Tune on the design half; score the holdout half once.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def sigmoid(y: float) -> float:
    """NAB's scaled sigmoid S(y): -1 beyond 3, else 2 / (1 + exp(5 y)) - 1."""
    return -1.0 if y > 3 else 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


S_MAX = sigmoid(-1.0)


def probation(n: int) -> int:
    """README rule 1: rows before this index are not scored."""
    return min(math.floor(0.15 * n), 750)


@dataclass
class ScoredFile:
    """One file's per-row anomaly scores and its windows as row indices [L, R] (inclusive)."""

    scores: np.ndarray
    windows: list[tuple[int, int]]


def row_values(n: int, windows: list[tuple[int, int]], tp: float, fp: float) -> tuple[np.ndarray, np.ndarray]:
    """v_i for every row and the index of the window holding it (-1 outside windows)."""
    v = np.empty(n)
    win = np.full(n, -1, dtype=np.int64)
    for k, (lo, hi) in enumerate(windows):
        win[lo : hi + 1] = k
    last: tuple[int, int] | None = None  # most recent window that ended: (R', W')
    for i in range(n):
        k = int(win[i])
        if k >= 0:
            lo, hi = windows[k]
            width = hi - lo + 1
            v[i] = tp * sigmoid(-(hi - i + 1) / width) / S_MAX
            if i == hi:
                last = (hi, width)
        elif last is None:
            v[i] = -fp
        else:
            r_end, width = last
            y = math.inf if width <= 1 else (i - r_end) / (width - 1)
            v[i] = fp * sigmoid(y)
    return v, win


def score_corpus(files: list[ScoredFile], tp: float, fp: float, fn: float) -> tuple[float, float, int]:
    """(raw score, theta, windows) with the single best theta for the whole corpus (README 5-7)."""
    all_s, all_v, all_w = [], [], []
    n_windows = 0
    for f in files:
        n = len(f.scores)
        p = probation(n)
        v, win = row_values(n, f.windows, tp, fp)
        all_s.append(np.asarray(f.scores, dtype=np.float64)[p:])
        all_v.append(v[p:])
        all_w.append(np.where(win[p:] >= 0, win[p:] + n_windows, -1))
        n_windows += len(f.windows)
    s = np.concatenate(all_s) if all_s else np.zeros(0)
    v = np.concatenate(all_v) if all_v else np.zeros(0)
    w = np.concatenate(all_w) if all_w else np.zeros(0, dtype=np.int64)
    order = np.argsort(-s, kind="stable")
    s, v, w = s[order], v[order], w[order]
    current = np.full(n_windows, -float(fn))
    total = -fn * n_windows  # theta = 1.1: nothing detected
    best, best_theta = total, 1.1
    i, n = 0, len(s)
    while i < n:
        j = i
        while j < n and s[j] == s[i]:
            k = int(w[j])
            if k < 0:
                total += float(v[j])
            elif v[j] > current[k]:
                total += float(v[j] - current[k])
                current[k] = v[j]
            j += 1
        if total > best:
            best, best_theta = total, float(s[i])
        i = j
    return best, best_theta, n_windows


def normalised(raw: float, tp: float, fn: float, n_windows: int) -> float:
    null, perfect = -fn * n_windows, tp * n_windows
    return 100.0 * (raw - null) / (perfect - null)


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.strip())


HALVES = ("all", "design", "holdout")


def load_corpus(data: Path, scored_dir: Path, half: str = "all") -> list[ScoredFile]:
    """Pair each scored output with its labelled windows (read only now, after detection);
    ``half`` keeps every file, or the even ("design") or odd ("holdout") positions in the order
    of the files' relative paths."""
    if half not in HALVES:
        raise ValueError(f"half must be one of {HALVES}, got {half!r}")
    windows = json.loads((data / "labels" / "combined_windows.json").read_text())
    files = []
    ordered = sorted(windows.items())
    if half != "all":
        ordered = ordered[0::2] if half == "design" else ordered[1::2]
    for rel, wins in ordered:
        out = scored_dir / Path(rel).name
        rows = np.genfromtxt(out, delimiter=",", skip_header=1, dtype=str, usecols=(0, 2), ndmin=2)
        stamps = [_ts(t) for t in rows[:, 0]]
        first: dict[datetime, int] = {}
        for i, t in enumerate(stamps):
            first.setdefault(t, i)
        idx = [(first[_ts(a)], first[_ts(b)]) for a, b in wins]
        files.append(ScoredFile(rows[:, 1].astype(np.float64), idx))
    return files


def evaluate(data: Path, files: list[ScoredFile]) -> dict[str, tuple[float, float]]:
    """Per profile: the normalised score and the best theta it was reached at."""
    profiles = json.loads((data / "config" / "profiles.json").read_text())
    result: dict[str, tuple[float, float]] = {}
    for name in PROFILES:
        cm = profiles[name]["CostMatrix"]
        tp, fp, fn = cm["tpWeight"], cm["fpWeight"], cm["fnWeight"]
        raw, theta, n_windows = score_corpus(files, tp, fp, fn)
        result[name] = (round(normalised(raw, tp, fn, n_windows), 2), theta)
    return result


def score_profiles(data: Path, files: list[ScoredFile]) -> dict[str, float]:
    return {name: score for name, (score, _theta) in evaluate(data, files).items()}


def _brute(files: list[ScoredFile], theta: float, tp: float, fp: float, fn: float) -> float:
    """Raw score at one theta straight from README steps 5-6 (for the self-check)."""
    total = 0.0
    for f in files:
        n = len(f.scores)
        v, win = row_values(n, f.windows, tp, fp)
        det = [i for i in range(probation(n), n) if f.scores[i] >= theta]
        total += sum(float(v[i]) for i in det if win[i] < 0)
        for k in range(len(f.windows)):
            hits = [i for i in det if win[i] == k]
            total += float(v[hits[0]]) if hits else -fn
    return total


def selfcheck(data: Path | None) -> None:
    """The README's worked example, and the null detector (always 0.5) scoring 0."""
    scores = np.zeros(100)
    scores[[10, 20, 45, 47, 55]] = 0.9
    v, _ = row_values(100, [(40, 49)], 1.0, 0.11)
    assert math.isclose(v[20], -0.11) and math.isclose(v[45], 0.8597925669097837), (v[20], v[45])
    assert math.isclose(v[55], -0.10242205695343354), v[55]
    # theta fixed at 0.5 in the example: scores are 0.9 or 0, so the best theta is the same.
    raw, theta, nw = score_corpus([ScoredFile(scores, [(40, 49)])], 1.0, 0.11, 1.0)
    assert math.isclose(raw, 0.6473705099563501) and theta == 0.9, (raw, theta)
    assert round(normalised(raw, 1.0, 1.0, nw), 4) == 82.3685
    # the one-pass sweep equals brute force over every candidate theta (ties -> higher theta)
    rng = np.random.default_rng(0)
    rand = [ScoredFile(rng.random(300).round(2), [(100, 130), (200, 220)]) for _ in range(3)]
    brute = max((_brute(rand, th, 1.0, 0.11, 1.0), th) for th in {1.1, *np.concatenate([f.scores[45:] for f in rand])})
    got = score_corpus(rand, 1.0, 0.11, 1.0)
    assert math.isclose(got[0], brute[0], abs_tol=1e-9) and got[1] == brute[1], (got, brute)
    if data is not None:
        with tempfile.TemporaryDirectory() as tmp:
            for csv in sorted((data / "data").glob("*/*.csv")):
                lines = csv.read_text().splitlines()
                body = [f"{ln.split(',')[0]},{ln.split(',')[1]},0.5" for ln in lines[1:]]
                (Path(tmp) / csv.name).write_text("\n".join(["timestamp,value,anomaly_score", *body]) + "\n")
            null_scores = score_profiles(data, load_corpus(data, Path(tmp)))
        assert all(v == 0.0 for v in null_scores.values()), null_scores
    print("selfcheck ok: README example 82.3685, null detector 0.0 on every profile", file=sys.stderr)


def counts(files: list[ScoredFile], theta: float) -> dict[str, float]:
    """Aggregate counts at ``theta`` (see the module docstring)."""
    found = false_alarms = candidates = 0
    first_values = 0.0
    for f in files:
        n = len(f.scores)
        p = probation(n)
        det = np.flatnonzero(f.scores >= theta)
        det = det[det >= p]
        inside = np.zeros(n, dtype=bool)
        for lo, hi in f.windows:
            inside[lo : hi + 1] = True
            hits = det[(det >= lo) & (det <= hi)]
            if len(hits):
                found += 1
                first_values += sigmoid(-(hi - hits[0] + 1) / (hi - lo + 1)) / S_MAX
            candidates += bool((f.scores[max(lo, p) : hi + 1] > 0).any())
        false_alarms += int((~inside[det]).sum())
    return {"theta": round(theta, 4), "found": found, "false_alarms": false_alarms,
            "mean_first_value": round(first_values / max(found, 1), 3), "candidates": candidates}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/nab"))
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    ap.add_argument("--selfcheck", action="store_true", help="verify the scorer first")
    ap.add_argument("--keep", type=Path, help="write the scored CSVs here instead of a temp dir")
    ap.add_argument("--set", dest="override", metavar="JSON", help="detect configuration changes, this run only")
    ap.add_argument("--counts", action="store_true", help="add aggregate counts at each profile's best theta")
    ap.add_argument("--half", choices=HALVES, default="all",
                    help="score only the design (even) or holdout (odd) half of the files, by relative path")
    args = ap.parse_args(argv)
    if args.selfcheck:
        selfcheck(args.data)
    from autonomic.analyze.detect_cli import DETECT_CONFIG, detect_files
    from autonomic.analyze.detectors import Ensemble

    detector = override = None
    if args.override:
        try:
            override = json.loads(args.override)
            if not isinstance(override, dict):
                raise ValueError("not a JSON object")
            detector = Ensemble(**{**DETECT_CONFIG, **override})
        except (ValueError, TypeError) as exc:
            ap.error(f"--set: {exc}")

    inputs = sorted((args.data / "data").glob("*/*.csv"))
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        t0 = time.perf_counter()
        detect_files(inputs, out, detector)  # the detector sees only the data files
        elapsed = time.perf_counter() - t0
        files = load_corpus(args.data, out, args.half)
    scored = evaluate(args.data, files)
    result: dict[str, object] = {name: score for name, (score, _theta) in scored.items()}
    if args.counts:
        for name, (_score, theta) in scored.items():
            result[f"{name}_counts"] = counts(files, theta)
    if override is not None:
        result["set"] = override
    result["files"] = len(files)
    if args.half != "all":
        result["half"] = args.half
    result["detect_seconds"] = round(elapsed, 2)
    if args.json:
        print(json.dumps(result))
    else:
        for k, val in result.items():
            print(f"{k:>20}: {val}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
