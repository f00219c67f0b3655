"""Streaming anomaly detectors, vectorised across the series of a metric family.

See :mod:`autonomic.analyze.detectors.base` for the contract every detector keeps.
"""

from typing import Any

from autonomic.analyze.detectors.autoseasonal import AutoSeasonal
from autonomic.analyze.detectors.base import StreamingDetector
from autonomic.analyze.detectors.changepoint import CUSUM
from autonomic.analyze.detectors.ensemble import Ensemble
from autonomic.analyze.detectors.ewma import EWMAZScore
from autonomic.analyze.detectors.mad import RobustMAD
from autonomic.analyze.detectors.novelty import ContextNovelty
from autonomic.analyze.detectors.seasonal import SeasonalBaseline


def builtin_detectors() -> dict[str, type[StreamingDetector]]:
    """Every built-in detector class by its ``name``."""
    return {cls.name: cls for cls in (EWMAZScore, RobustMAD, SeasonalBaseline, CUSUM, AutoSeasonal, ContextNovelty,
                                        Ensemble)}


def from_state(d: dict[str, Any]) -> StreamingDetector:
    """Rebuild any built-in detector from its ``state_dict()``."""
    classes = builtin_detectors()
    if d.get("type") not in classes:
        raise ValueError(f"unknown detector type {d.get('type')!r}; known: {sorted(classes)}")
    return classes[d["type"]].from_state(d)


__all__ = ["CUSUM", "AutoSeasonal", "ContextNovelty", "EWMAZScore", "Ensemble", "RobustMAD", "SeasonalBaseline",
           "StreamingDetector", "builtin_detectors", "from_state"]
