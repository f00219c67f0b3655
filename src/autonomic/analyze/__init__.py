"""Analyze: detectors, forecasts, health states and correlation of findings into incidents.

The names below load on first use (PEP 562), so a command that needs none of them (the CLI's
``pause`` at 3 a.m., say) does not pay for scipy and the detector kernels at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autonomic.analyze.causes import cause_of
    from autonomic.analyze.correlate import correlate, quiet
    from autonomic.analyze.thresholds import HealthDetector, Thresholds, assess
    from autonomic.analyze.trend import (
        Forecast,
        TrendDetector,
        TrendSpec,
        default_trend_specs,
        forecast_confidence,
        predict_breach,
    )

_HOME = {
    "cause_of": "causes",
    "correlate": "correlate",
    "quiet": "correlate",
    "HealthDetector": "thresholds",
    "Thresholds": "thresholds",
    "assess": "thresholds",
    "Forecast": "trend",
    "TrendDetector": "trend",
    "TrendSpec": "trend",
    "default_trend_specs": "trend",
    "forecast_confidence": "trend",
    "predict_breach": "trend",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'autonomic.analyze' has no attribute {name!r}")
    return getattr(importlib.import_module(f"autonomic.analyze.{home}"), name)


__all__ = [
    "Forecast",
    "HealthDetector",
    "Thresholds",
    "TrendDetector",
    "TrendSpec",
    "assess",
    "cause_of",
    "correlate",
    "default_trend_specs",
    "forecast_confidence",
    "predict_breach",
    "quiet",
]
