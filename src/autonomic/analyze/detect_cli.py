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
* An output that would be one of the inputs (``--out`` the input's own directory, by any path):
  ConfigError naming the input and ``--out``; nothing is written.
* A row that cannot be read (not UTF-8, a cell beyond the csv module's 131,072 characters), in
  any file, at any line: ConfigError naming the file and line; no output is left for any file.
* An ``--out`` that cannot be made a directory (a file there): ConfigError naming ``--out``.

The files are read and written a row at a time (memory does not grow with their length), each
output under a temporary name in ``--out`` until every input has been read to its end.
"""

from __future__ import annotations

import csv
import math
import os
import secrets
from collections.abc import Sequence
from contextlib import ExitStack
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


class _Rows:
    """One input CSV read a row at a time: ``header()`` checks its columns, ``next_row()`` gives
    (timestamp, value text) or None at the end. Errors are ConfigErrors naming the file (and line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = path.open(newline="", encoding="utf-8-sig")
        self._reader = csv.reader(self._fh)
        self._cols = (0, 0)

    def _bad(self, exc: Exception) -> ConfigError:
        # text is decoded a block ahead of the rows parsed, so only a csv error knows its line
        line = self._reader.line_num if isinstance(exc, csv.Error) else None
        return ConfigError([Problem(str(self.path), line, "", f"cannot read: {exc}")])

    def header(self) -> bool:
        """Check the header; False for an empty file (no bytes)."""
        try:
            header = next(self._reader, None)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise self._bad(exc) from None
        if header is None:
            return False
        names = [h.strip() for h in header]
        for col in ("timestamp", "value"):
            if col not in names:
                raise ConfigError([Problem(str(self.path), 1, col, f"missing column {col!r} (header: {names})")])
        self._cols = (names.index("timestamp"), names.index("value"))
        return True

    def next_row(self) -> tuple[str, str] | None:
        it, iv = self._cols
        try:
            for row in self._reader:
                if row:
                    return (row[it] if it < len(row) else "", row[iv] if iv < len(row) else "")
        except (UnicodeDecodeError, csv.Error) as exc:
            raise self._bad(exc) from None
        return None

    def close(self) -> None:
        self._fh.close()


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


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))


def detect_files(inputs: Sequence[Path], out_dir: Path, detector: Any = None) -> list[Path]:
    """Score every input CSV and write ``out_dir/<name>``; returns the written paths. ``detector``
    (fresh, for experiments) replaces the one :func:`make_detector` gives.

    The files are read and written a row at a time, all in step (memory does not grow with their
    length); each output is written to a temporary file beside it and renamed into place once every
    input has been read, so a bad input leaves no output at all."""
    inputs = [Path(p) for p in inputs]
    names = [p.name for p in inputs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError([Problem(n, None, "INPUT", "two inputs share this file name") for n in dupes])
    targets = [out_dir / p.name for p in inputs]
    clash = [Problem(str(p), None, "--out", f"{t} would overwrite this input with its scores: give --out "
                     "another directory") for p, t in zip(inputs, targets, strict=True) if _same_file(p, t)]
    if clash:
        raise ConfigError(clash)
    det = detector if detector is not None else make_detector()
    with ExitStack() as stack:
        files = []
        for p in inputs:
            rows = _Rows(p)
            stack.callback(rows.close)
            files.append(rows if rows.header() else None)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError([Problem("", None, "--out", f"cannot make the directory {out_dir}: "
                                       f"{exc.strerror or exc}")]) from None
        temps: list[Path] = []
        try:
            writers = []
            for t in targets:
                tmp = out_dir / f".{t.name}.{secrets.token_hex(4)}.tmp"  # made with the umask's mode
                fh = stack.enter_context(tmp.open("x", newline="", encoding="utf-8"))
                temps.append(tmp)
                w = csv.writer(fh, lineterminator="\n")
                w.writerow(OUT_COLUMNS)
                writers.append(w)
            _score_rows(files, writers, det)
        except BaseException:
            for tmp in temps:
                tmp.unlink(missing_ok=True)
            raise
    try:
        for tmp, t in zip(temps, targets, strict=True):
            os.replace(tmp, t)
    finally:  # one that could not be renamed (a directory of that name) is not left behind
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    return targets


def _score_rows(files: Sequence[_Rows | None], writers: Sequence[Any], det: Any) -> None:
    """Stream every file's rows through ``det`` in step (a file that has ended is a missing sample,
    which changes nothing), writing each row with its score as it is scored."""
    live = list(files)
    while True:
        rows = [f.next_row() if f is not None else None for f in live]
        live = [f if r is not None else None for f, r in zip(live, rows, strict=True)]
        if all(r is None for r in rows):
            return
        scores = det.update(np.array([_parse(r[1]) if r is not None else math.nan for r in rows]))
        for w, r, sc in zip(writers, rows, scores, strict=True):
            if r is not None:
                w.writerow((r[0], r[1], repr(float(sc))))


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
