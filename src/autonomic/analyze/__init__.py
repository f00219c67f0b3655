"""Analyze: detectors, forecasts, health states and correlation of findings into incidents."""

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
