"""The long CSV format, ``timestamp,service,metric,value``: one sample per row.

Shared by ``autonomic replay`` (:mod:`autonomic.monitor.replay`, recorded metrics in) and
root-cause ranking (:mod:`autonomic.analyze.rca`, an incident window and a baseline). Pure:
text in, arrays out.

Rules for bad input: a missing column or a file with no usable row is a
:class:`~autonomic.errors.ConfigError` naming the source (and the column); a row whose value is
not a finite number, whose timestamp is neither epoch seconds nor ISO 8601 (naive = UTC), or
whose service or metric is empty is skipped and counted; an epoch number of 1e11 or more (in
size) is milliseconds, Prometheus' unit (1e11 seconds would be the year 5138), and one beyond the
calendar (years 1 to 9999) is a bad timestamp; extra columns are ignored and listed;
each series is sorted by time (stable, so duplicate timestamps keep file order). A row the csv
module cannot read (a cell beyond its 131,072-character limit) is a ConfigError naming its line.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from autonomic.errors import ConfigError, Problem
from autonomic.printable import counted

CSV_COLUMNS = ("timestamp", "service", "metric", "value")

Series = dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]  # (service, metric) -> (ts, values)


@dataclass(frozen=True)
class LongCsv:
    """Parsed ``timestamp,service,metric,value`` rows, each series sorted by time."""

    series: Series
    skipped_values: int = 0  # rows whose value is not a finite number
    skipped_timestamps: int = 0  # rows whose timestamp is neither a number nor ISO 8601
    skipped_blank: int = 0  # rows with an empty service or metric
    ignored_columns: tuple[str, ...] = ()
    services: frozenset[str] = field(default_factory=frozenset)


def from_series(series: Series) -> LongCsv:
    """Samples already in memory (the engine's series store) as a :class:`LongCsv`."""
    return LongCsv(series=dict(series), services=frozenset(s for s, _ in series))


_EPOCH_MS = 1e11  # an epoch number this large is milliseconds: as seconds it is the year 5138
_EPOCH_FIRST, _EPOCH_LAST = -62_135_596_800.0, 253_402_300_799.0  # 0001-01-01, 9999-12-31T23:59:59 (UTC)


def parse_timestamp(text: str) -> float | None:
    """Epoch seconds (milliseconds from 1e11 on), or ISO 8601 (naive means UTC); None when it is
    neither, or outside the calendar (years 1 to 9999)."""
    text = text.strip()
    try:
        v = float(text)
    except ValueError:
        pass
    else:
        if abs(v) >= _EPOCH_MS:
            v /= 1000.0
        return v if _EPOCH_FIRST <= v <= _EPOCH_LAST else None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def parse_long_csv(text: str, source: str) -> LongCsv:
    """Parse a long CSV. Missing columns or no usable row: ConfigError naming ``source``.

    Unparsable values and timestamps are skipped and counted; extra columns are ignored
    (and listed). Rows keep file order within a series until sorted by timestamp (stable).
    """
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        return _parse_rows(reader, source)
    except csv.Error as exc:
        raise ConfigError([Problem(source, reader.line_num, "", f"cannot read this row: {exc}")]) from None


def _parse_rows(reader: Iterator[list[str]], source: str) -> LongCsv:
    header = next(reader, None)
    if header is None:
        raise ConfigError([Problem(source, None, "(header)", "empty file: expected columns " + ",".join(CSV_COLUMNS))])
    names = [h.strip() for h in header]
    missing = [c for c in CSV_COLUMNS if c not in names]
    if missing:
        raise ConfigError([Problem(source, 1, c, f"missing column {c!r} (header: {','.join(names)})") for c in missing])
    idx = [names.index(c) for c in CSV_COLUMNS]
    ignored = tuple(n for n in names if n not in CSV_COLUMNS)
    rows: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    bad_v = bad_t = blank = 0
    for row in reader:
        if not row or all(not c.strip() for c in row):
            continue
        cells = [row[i].strip() if i < len(row) else "" for i in idx]
        ts_text, service, metric, value_text = cells
        if not service or not metric:
            blank += 1
            continue
        ts = parse_timestamp(ts_text)
        if ts is None:
            bad_t += 1
            continue
        try:
            value = float(value_text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            bad_v += 1
            continue
        rows[(service, metric)].append((ts, value))
    if not rows:
        raise ConfigError([Problem(source, None, "value",
                                   f"no usable rows ({counted(bad_v, 'non-numeric value')}, "
                                   f"{counted(bad_t, 'bad timestamp')}, {counted(blank, 'row')} without "
                                   "service/metric)")])
    series: Series = {}
    for key, pts in rows.items():
        arr = np.array(pts, dtype=np.float64)
        order = np.argsort(arr[:, 0], kind="stable")
        series[key] = (arr[order, 0], arr[order, 1])
    return LongCsv(series, bad_v, bad_t, blank, ignored, frozenset(s for s, _ in series))
