"""Staircase benchmark: is a leak that grows in jumps forecast, and are deploys still not?

    python benchmarks/staircase.py --json

The trend detector's breach forecast (:func:`autonomic.analyze.trend.predict_breach`, the
default spec: window 300 s, 8 points, horizon 3600 s) reads a rise that its window holds as
one level shift as a deploy, not a leak (rule 9). A leak that grows in jumps (a cache a periodic
job fills, a pool that loses a connection now and then) shows one jump per window when its jumps
are as far apart as the window is long: each alike to a deploy. This runs the forecast twice,
side by side in one run, on the same series: without the longer view (``long_window_s`` 0, the
default) and with it (``long_window_s`` 1200, four windows).

The generator (fixed before any measurement; seeded, ``--seed`` default 11), every series
sampled every 10 s for 2 hours (720 samples, the series store's default capacity), threshold 85,
gaussian noise of sigma U(0.2, 1.0), base level U(30, 50):

* ``staircase`` (``--series`` of them): jumps every S ~ U(150, 600) s from a start U(0, 1200) s,
  each over 1 to 3 samples, sized so that the series crosses 85 at the jump due nearest a
  target time U(4000, 7000) s (never before 3,000 s: at least 10 jumps of history before it).
  The **true breach** is the first sample at or above 85.
* ``deploys`` (as many): 1, 2 or 3 level shifts (probability 1/3 each) of U(4, 12) each, the
  first at U(600, 3600) s and each next U(300, 1800) s later; shifted so its maximum stays
  U(5, 20) below 85. Nothing breaches.
* ``leak`` (half as many): a straight rise from U(600, 1800) s crossing 85 at U(4000, 7000) s: a
  forecast that already worked, to see it still does.

Scoring: the forecast runs every 60 s of series time from 600 s on, each time seeing only the
samples up to then. ``predicted_ahead``: share of breaching series with a forecast at some time
at least 600 s before their true breach; ``median_lead_s``: the median of (true breach - first
such forecast); ``false_forecasts``: share of ``deploys`` series with any forecast;
``us_per_call``: mean time of one forecast (the longer view is read only when the window holds
one step).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from autonomic.analyze.trend import TrendSpec, predict_breach

DT = 10.0
SPAN_S = 7200.0
LINE = 85.0
LEAD_MIN_S = 600.0
EVERY_S = 60.0
FIRST_S = 600.0
LONG_S = 1200.0  # four windows


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(0, 1, n) * rng.uniform(0.2, 1.0)


def staircase(rng: np.random.Generator, ts: np.ndarray) -> np.ndarray:
    base = rng.uniform(30, 50)
    every = rng.uniform(150, 600)
    start = rng.uniform(0, 1200)
    target = max(rng.uniform(4000, 7000), 3000.0)
    jumps = int(np.floor((target - start) / every)) + 1
    size = (LINE - base) / jumps * 1.02
    clean = np.full(ts.size, base)
    for j in range(jumps + 20):
        at = start + j * every
        ramp = int(rng.integers(1, 4)) * DT
        clean += size * np.clip((ts - at) / ramp, 0.0, 1.0)
    return clean + _noise(rng, ts.size)


def deploys(rng: np.random.Generator, ts: np.ndarray) -> np.ndarray:
    clean = np.zeros(ts.size)
    at = rng.uniform(600, 3600)
    for _ in range(int(rng.integers(1, 4))):
        clean += rng.uniform(4, 12) * (ts >= at)
        at += rng.uniform(300, 1800)
    values = clean + _noise(rng, ts.size)
    return values + (LINE - rng.uniform(5, 20) - values.max())


def leak(rng: np.random.Generator, ts: np.ndarray) -> np.ndarray:
    base = rng.uniform(30, 50)
    start, cross = rng.uniform(600, 1800), rng.uniform(4000, 7000)
    return base + (LINE - base) * np.clip((ts - start) / (cross - start), 0.0, None) + _noise(rng, ts.size)


def run(values: np.ndarray, ts: np.ndarray, spec: TrendSpec) -> tuple[list[float], float, int]:
    """Times a forecast was made, total seconds spent, calls made."""
    found: list[float] = []
    spent, calls = 0.0, 0
    for now in np.arange(FIRST_S, SPAN_S, EVERY_S):
        upto = int(now // DT) + 1
        t_all, v_all = ts[:upto], values[:upto]
        first = np.searchsorted(t_all, now - spec.window_s)
        back = int(np.searchsorted(t_all, now - spec.long_window_s))
        longer: Callable[[], tuple[Any, Any]] = lambda t_all=t_all, v_all=v_all, back=back: (  # noqa: E731
            t_all[back:], v_all[back:])
        t0 = time.perf_counter()
        forecast = predict_breach(t_all[first:], v_all[first:], LINE, now=float(now), window_s=spec.window_s,
                                  min_points=spec.min_points, horizon_s=spec.horizon_s, ema_alpha=spec.ema_alpha,
                                  z_min=spec.z_min, min_r2=spec.min_r2, min_span_s=spec.span_s,
                                  longer=longer, long_window_s=spec.long_window_s)
        spent += time.perf_counter() - t0
        calls += 1
        if forecast is not None:
            found.append(float(now))
    return found, spent, calls


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=200)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    ts = np.arange(int(SPAN_S / DT), dtype=np.float64) * DT
    kinds = {"staircase": [staircase(rng, ts) for _ in range(args.series)],
             "deploys": [deploys(rng, ts) for _ in range(args.series)],
             "leak": [leak(rng, ts) for _ in range(max(1, args.series // 2))]}
    specs = {"before": TrendSpec(metric="m"), "after": TrendSpec(metric="m", long_window_s=LONG_S)}
    out: dict[str, Any] = {"benchmark": "staircase", "series": args.series, "seed": args.seed}
    for label, spec in specs.items():
        spent, calls = 0.0, 0
        for kind, series in kinds.items():
            ahead, leads, false = 0, [], 0
            for values in series:
                found, s, c = run(values, ts, spec)
                spent, calls = spent + s, calls + c
                crossed = np.flatnonzero(values >= LINE)
                if crossed.size == 0:
                    false += bool(found)
                    continue
                breach = float(ts[crossed[0]])
                early = [f for f in found if f <= breach - LEAD_MIN_S]
                if early:
                    ahead += 1
                    leads.append(breach - early[0])
            n = len(series)
            if kind == "deploys":
                out[f"{label}_{kind}_false_forecasts"] = round(false / n, 3)
            else:
                out[f"{label}_{kind}_predicted_ahead"] = round(ahead / n, 3)
                out[f"{label}_{kind}_median_lead_s"] = round(float(np.median(leads)), 1) if leads else None
        out[f"{label}_us_per_call"] = round(spent / max(1, calls) * 1e6, 1)
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
