"""Forecast benchmark: are breaches of a threshold predicted early, accurately, and only then?

    python benchmarks/forecast.py --json

The generator (fixed before any tuning; seeded, ``--seed`` default 7):

* ``--series`` (1,000) series of a resource in percent, sampled every 60 s for 3 days (4,320
  samples), threshold 90. Series ``i < N/2`` are designed to breach, the rest not.
* Every series: base level U(30, 60); a daily profile of amplitude A ~ U(3, 12)
  (``A * (0.7 sin(2 pi t/day + p1) + 0.3 sin(4 pi t/day + p2))``, random phases); gaussian
  noise with sigma ~ U(0.3, 2.0); 0, 1 or 2 steps (probability 0.4, 0.4, 0.2) at uniformly
  random times over the 3 days, each of size +-U(2, 6).
* Breaching series: the clean signal above (without noise) is first shifted so its maximum is
  10 below the threshold; then a slow rise starts at s ~ U(0.25, 1.75) days and is sized so
  the clean signal reaches the threshold at a target time uniform over the last day
  (U(2 days, 3 days - 1 h)). Each breaching series is a *leak* (constant rate) or, with
  probability 1/2, a *fill* whose rate follows the time of day (``rate * (1 + 0.6 sin(2 pi t/day + p3))``, like
  a disk filled by traffic). The **true breach time** is the first sample whose observed
  (noisy) value is >= the threshold. A breaching draw whose true breach is not within the
  last day (a seasonal peak or step crossed earlier, or it never crossed) is redrawn, so every
  true breach lies in the last day.
* Non-breaching series: the clean signal plus noise is shifted so its observed maximum over
  the 3 days is U(1, 6) below the threshold: seasonal peaks and steps come close but never
  cross.

Scoring (one forecaster configuration for all series, labels never given to it): the
forecaster runs streaming, evaluated every 5 min of series time once it has its minimum
history, each evaluation seeing only samples up to that instant
(:func:`autonomic.analyze.forecast.stream_forecasts`). A *finding* at evaluation time e is a
predicted breach time ``breach_at`` (after its confirmation rule).

* ``predicted_ahead``: share of breaching series with a finding at some e <= true breach - 600 s.
* ``median_rel_error``: over those series, at the **first** such finding e0:
  ``|breach_at(e0) - true breach| / (true breach - e0)``; the median over the series.
* ``false_forecasts``: share of non-breaching series with any finding at any time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from autonomic.analyze.forecast import SeasonalTrendSpec, stream_forecasts

DAY = 86_400.0
DT = 60.0
THRESHOLD = 90.0
LEAD_MIN_S = 600.0


def _draw(rng: np.random.Generator, n: int, breaching: bool, ts: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` series of one kind by the rules above: (values (n, T), true breach time (n,))."""
    days = ts[-1] / DAY
    phase = 2 * np.pi * ts / DAY
    base = rng.uniform(30, 60, n)[:, None]
    amp = rng.uniform(3, 12, n)[:, None]
    p1, p2, p3 = (rng.uniform(0, 2 * np.pi, n)[:, None] for _ in range(3))
    clean = base + amp * (0.7 * np.sin(phase + p1) + 0.3 * np.sin(2 * phase + p2))
    n_steps = rng.choice(3, size=n, p=[0.4, 0.4, 0.2])
    for i in range(n):
        for _ in range(n_steps[i]):
            at = rng.uniform(0, ts[-1])
            clean[i] += (ts >= at) * rng.choice([-1.0, 1.0]) * rng.uniform(2, 6)
    noise = rng.normal(0, 1, clean.shape) * rng.uniform(0.3, 2.0, n)[:, None]
    if not breaching:
        values = clean + noise
        margin = rng.uniform(1, 6, n)
        return values + (THRESHOLD - margin - values.max(axis=1))[:, None], np.full(n, np.nan)
    c = clean - (clean.max(axis=1, keepdims=True) - (THRESHOLD - 10.0))
    start = rng.uniform(0.25, 1.75, n)[:, None] * DAY
    target = rng.uniform(2 * DAY, days * DAY - 3600.0, n)
    fill = rng.random(n)[:, None] < 0.5
    rate_shape = np.where(fill, 1 + 0.6 * np.sin(phase + p3), 1.0) * (ts >= start)
    rise = np.cumsum(rate_shape, axis=1) * DT  # integral of the rate shape, 0 before start
    ti = np.round(target / DT).astype(int)
    rows = np.arange(n)
    scale = (THRESHOLD - c[rows, ti]) / rise[rows, ti]
    values = c + scale[:, None] * rise + noise
    crossed = values >= THRESHOLD
    breach = np.where(crossed.any(axis=1), ts[crossed.argmax(axis=1)], np.nan)
    return values, breach


def generate(n: int, seed: int, days: float = 3.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ts (T,), values (n, T), true breach time (n,), NaN for non-breaching) per the rules above.
    Breaching draws whose first observed crossing is not in the last day are redrawn."""
    rng = np.random.default_rng(seed)
    ts = np.arange(int(round(days * DAY / DT)), dtype=np.float64) * DT
    half = n // 2
    values = np.empty((n, ts.size))
    breach = np.full(n, np.nan)
    values[half:], _ = _draw(rng, n - half, False, ts)
    filled = 0
    while filled < half:
        v, b = _draw(rng, half - filled, True, ts)
        good = np.isfinite(b) & (b >= (days - 1) * DAY)
        k = int(good.sum())
        values[filled: filled + k], breach[filled: filled + k] = v[good], b[good]
        filled += k
    return ts, values, breach


def score(ts: np.ndarray, breach: np.ndarray, eval_ts: np.ndarray, found: np.ndarray,
          breach_at: np.ndarray) -> dict[str, float]:
    """The three numbers from per-evaluation findings ``found`` (n, E) and ``breach_at`` (n, E)."""
    is_b = np.isfinite(breach)
    ok = found & (eval_ts[None, :] <= (breach - LEAD_MIN_S)[:, None])
    hit = ok.any(axis=1) & is_b
    first = ok.argmax(axis=1)
    rows = np.flatnonzero(hit)
    e0 = eval_ts[first[rows]]
    rel = np.abs(breach_at[rows, first[rows]] - breach[rows]) / (breach[rows] - e0)
    return {
        "predicted_ahead": float(hit.sum() / max(1, is_b.sum())),
        "median_rel_error": float(np.median(rel)) if rel.size else float("nan"),
        "false_forecasts": float(found[~is_b].any(axis=1).sum() / max(1, (~is_b).sum())),
        "mean_lead_s": float(np.mean(breach[rows] - e0)) if rel.size else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="forecast benchmark")
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    ts, values, breach = generate(args.series, args.seed)
    thresholds = np.full(args.series, THRESHOLD)
    spec = SeasonalTrendSpec(metric="resource_percent", threshold=THRESHOLD)
    eval_ts, found, breach_at = stream_forecasts(ts, values, thresholds, spec)
    out = score(ts, breach, eval_ts, found, breach_at)
    out["series"] = args.series
    out["seconds"] = round(time.perf_counter() - t0, 2)
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
