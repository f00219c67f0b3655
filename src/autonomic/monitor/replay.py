"""Source ``replay``: recorded samples played back in time order (shadow runs, tests).

:meth:`ReplaySource.from_csv` reads the long CSV ``timestamp,service,metric,value`` (the format
``autonomic rca`` reads: epoch seconds (or milliseconds) or ISO 8601 timestamps; rows whose value is not a finite
number are skipped and counted). Each ``collect(now)`` returns the samples with ``ts <= now``
not given out yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from autonomic.errors import ConfigError, Problem
from autonomic.longcsv import parse_long_csv
from autonomic.model import Sample


class ReplaySource:
    """Plays back recorded samples: each ``collect(now)`` returns those with ts <= now not yet given."""

    def __init__(self, samples: Iterable[Sample], name: str = "replay") -> None:
        self.name = name
        self._samples = sorted(samples, key=lambda s: s.ts)
        self._i = 0
        self.skipped = 0  # rows of the recording that held no usable sample

    @classmethod
    def from_csv(cls, text: str, source: str) -> ReplaySource:
        """From a long CSV; ConfigError naming the file (and column) when it cannot be read."""
        data = parse_long_csv(text, source)
        samples = [Sample(service, metric, float(t), float(v))
                   for (service, metric), (ts, values) in data.series.items()
                   for t, v in zip(ts, values, strict=True)]
        if not samples:
            raise ConfigError([Problem(source, None, "", "no samples: expected timestamp,service,metric,value rows")])
        replay = cls(samples, name=f"replay:{source}")
        replay.skipped = data.skipped_values + data.skipped_timestamps + data.skipped_blank
        return replay

    @property
    def first_ts(self) -> float:
        return self._samples[0].ts if self._samples else 0.0

    @property
    def last_ts(self) -> float:
        return self._samples[-1].ts if self._samples else 0.0

    @property
    def services(self) -> list[str]:
        return sorted({s.service for s in self._samples})

    def __len__(self) -> int:
        return len(self._samples)

    def collect(self, now: float) -> Sequence[Sample]:
        start = self._i
        while self._i < len(self._samples) and self._samples[self._i].ts <= now:
            self._i += 1
        return self._samples[start:self._i]
