"""``autonomic detect INPUT... --out DIR``: score CSV files with the built-in ensemble.

For each input CSV (columns ``timestamp,value``; other columns are ignored) this writes
``DIR/<same file name>`` with columns ``timestamp,value,anomaly_score``: one row per input
row, in input order, the score in [0, 1]. One fixed configuration (:data:`DETECT_CONFIG`)
is used for every file; nothing but the file's own rows is read (never labels). Scoring is
streaming: a row's score depends only on the rows up to and including it. All files run as
the series of one vectorised detector, which gives the same scores as running each alone.

Bad input rules:

* A file without a ``timestamp`` or ``value`` column: :class:`~autonomic.errors.ConfigError`
  naming the file and the missing column; nothing is written for any file.
* A value that does not parse as a number, or is NaN or +-inf: a missing sample. The row is
  kept (value written back as it was), scores 0, and does not change the detector's state.
* Duplicate or out-of-order timestamps: rows are processed in file order, as a stream would
  deliver them; timestamps are copied through and never parsed or reordered.
* An empty file (no bytes, or only the header): the output is the header only.
* Huge magnitudes (up to float64's limit): clipped to +-1e150 inside the detector, so no
  overflow warnings and finite scores.
* Two inputs with the same file name: ConfigError (their outputs would collide).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from autonomic.errors import ConfigError, Problem
from autonomic.printable import counted

if TYPE_CHECKING:
    from autonomic.analyze.detectors import Ensemble

OUT_COLUMNS = ("timestamp", "value", "anomaly_score")

# The one configuration for every file, chosen on NAB as a whole (BENCHMARKS.md has the scores,
# benchmarks/nab-experiments.md every configuration tried).
# Two members, calibrated per series and averaged: a slow EWMA z-score against a seasonal profile
# when the warm-up shows a period (else one level), and the novelty of each step in a per-series
# Markov table of the quantised value. Only a new (slowly forgotten) record of that surprise that
# is also a record of one member's own surprise alarms; the calibration is protected while the
# (pre-onset) score is at or above 0.3, so a lasting anomaly is not learned. Plus the "spatial
# anomaly" rule of NAB's HTM detector (more than 5% of the range beyond every earlier value),
# watched on the value, on its EW means at rates 0.3, 0.1 and 0.03 (a shift over a few samples)
# and on the seasonal residual (these last ones only while a member's surprise is above 1, so a
# slow drift to a new level is not an alarm). An alarm's echoes are damped (an alarm g steps after the previous
# one, and no stronger, is scaled by 1 - exp(-g / 300)), so an anomaly alarms once, at its onset.
DETECT_CONFIG: dict[str, Any] = {
    "members": [{"type": "autoseasonal", "alpha": 0.003}, {"type": "novelty"}],
    "combine": "mean",
    "beta": 0.005,
    "min_std": 1.0,
    "onset_decay": 0.99999,
    "onset_member": True,
    "spatial_tolerance": 0.05,
    "spatial_rates": [1.0, 0.3, 0.1, 0.03],
    "spatial_resid": True,
    "spatial_confirm": 1.0,
    "echo_steps": 300,
    "echo_level": 0.3,
    "protect_level": 0.3,
}


def make_detector() -> Ensemble:
    """The detector ``autonomic detect`` uses, fresh."""
    from autonomic.analyze.detectors import Ensemble  # the kernels load when a detector is made

    return Ensemble(**DETECT_CONFIG)


def _parse(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        return math.nan
    return v if math.isfinite(v) else math.nan


def read_series(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(timestamps, value strings, values) of one CSV; unparsable or non-finite values are NaN.
    A file that is not UTF-8 text, or lacks a column, is a ConfigError naming it."""
    try:
        return _read_series(path)
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(path), None, "", f"cannot read: {exc}")]) from None


def _read_series(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return [], [], np.zeros(0)
        names = [h.strip() for h in header]
        for col in ("timestamp", "value"):
            if col not in names:
                raise ConfigError([Problem(str(path), 1, col, f"missing column {col!r} (header: {names})")])
        it, iv = names.index("timestamp"), names.index("value")
        ts: list[str] = []
        raw: list[str] = []
        for row in reader:
            if not row:
                continue
            ts.append(row[it] if it < len(row) else "")
            raw.append(row[iv] if iv < len(row) else "")
    return ts, raw, np.array([_parse(v) for v in raw], dtype=np.float64)


def score_matrix(columns: Sequence[np.ndarray], detector: Any = None) -> list[np.ndarray]:
    """Scores for several series, each streamed through one shared vectorised detector
    (shorter series are padded with missing samples, which change nothing)."""
    det = detector if detector is not None else make_detector()
    if not columns:
        return []
    steps = max((len(c) for c in columns), default=0)
    mat = np.full((steps, len(columns)), np.nan)
    for j, c in enumerate(columns):
        mat[: len(c), j] = c
    out = np.zeros_like(mat)
    for i in range(steps):
        out[i] = det.update(mat[i])
    return [out[: len(c), j] for j, c in enumerate(columns)]


def detect_files(inputs: Sequence[Path], out_dir: Path, detector: Any = None) -> list[Path]:
    """Score every input CSV and write ``out_dir/<name>``; returns the written paths. ``detector``
    (fresh, for experiments) replaces the one :func:`make_detector` gives."""
    inputs = [Path(p) for p in inputs]
    names = [p.name for p in inputs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError([Problem(n, None, "INPUT", "two inputs share this file name") for n in dupes])
    series = [read_series(p) for p in inputs]
    scores = score_matrix([s[2] for s in series], detector)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path, (ts, raw, _), sc in zip(inputs, series, scores, strict=True):
        target = out_dir / path.name
        with target.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(OUT_COLUMNS)
            w.writerows(zip(ts, raw, (repr(float(s)) for s in sc), strict=True))
        written.append(target)
    return written


detect_app = typer.Typer(add_completion=False, help="Score timestamp,value CSV files for anomalies.")


@detect_app.command()
def detect(
    inputs: Annotated[list[Path], typer.Argument(help="CSV files with columns timestamp,value")],
    out: Annotated[Path, typer.Option("--out", "-o", help="directory for the scored CSVs")],
) -> None:
    """Write OUT/<name> with timestamp,value,anomaly_score for each INPUT (streaming scores)."""
    try:
        written = detect_files(inputs, out)
    except (ConfigError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"scored {counted(len(written), 'file')} into {out}")


if __name__ == "__main__":
    detect_app()
