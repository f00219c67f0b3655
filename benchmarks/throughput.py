"""Throughput of the standard detector suite vs river's GaussianScorer.

    python benchmarks/throughput.py --json

The standard suite is :class:`autonomic.analyze.detectors.Ensemble` with its defaults (the
configuration ``autonomic detect`` uses), run over ``--series`` series x ``--steps`` steps of
seeded noisy data, one vectorised ``update`` per step. river's ``anomaly.GaussianScorer`` is
fed point by point (``score_one`` then ``learn_one``) on the same data, on the first
``--river-series`` series only (it is ~1e5 times slower); its rate is per sample, so the
subset's rate is the comparable number. Prints ``{"samples_per_s", "river_samples_per_s",
"ratio", "bytes_per_series", ...}``.

The detectors' kernels are compiled once per machine (numba, cached on disk) and loaded once
per process; that one-off cost is measured apart (``kernel_load_s``: one step of a ten-series
ensemble before the timed run) and is not in ``samples_per_s``. Allocating the 100,000
series' state is (it happens in the first timed step).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from autonomic.analyze.detectors import Ensemble


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="detector throughput vs river")
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--river-series", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(42)
    t = np.arange(args.steps)[:, None]
    level = rng.uniform(10, 1000, size=args.series)
    data = level * (1 + 0.1 * np.sin(2 * np.pi * t / 24)) + rng.normal(0, 1, (args.steps, args.series)) * level * 0.02
    data[args.steps // 2 :, :: 100] *= 1.5  # some shifts

    t0 = time.perf_counter()
    Ensemble().update(np.ones(10))  # loads (or on a new machine compiles) the kernels
    kernel_load = time.perf_counter() - t0

    det = Ensemble()
    t0 = time.perf_counter()
    for row in data:
        det.update(row)
    ours = time.perf_counter() - t0
    samples = args.series * args.steps

    from river import anomaly

    n_river = min(args.river_series, args.series)
    scorers = [anomaly.GaussianScorer(grace_period=10) for _ in range(n_river)]
    sub = data[:, :n_river].tolist()
    t0 = time.perf_counter()
    for row in sub:
        for scorer, y in zip(scorers, row, strict=True):
            scorer.score_one(None, y)
            scorer.learn_one(None, y)
    theirs = time.perf_counter() - t0

    ours_rate = samples / ours
    river_rate = n_river * args.steps / theirs
    result = {
        "samples_per_s": round(ours_rate),
        "river_samples_per_s": round(river_rate),
        "ratio": round(ours_rate / river_rate, 1),
        "bytes_per_series": det.bytes_per_series(),
        "kernel_load_s": round(kernel_load, 3),
        "samples_per_s_incl_kernel_load": round(samples / (ours + kernel_load)),
        "series": args.series,
        "steps": args.steps,
        "river_series_measured": n_river,
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k:>24}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
