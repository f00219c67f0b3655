"""Config rules that relate two fields: each refused with both named, at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from autonomic.config import load_config_data
from autonomic.errors import ConfigError


def test_alert_resolve_after_s_below_resolve_after_s_is_refused_naming_both(tmp_path: Path) -> None:
    refused = r"engine: .*alert_resolve_after_s \(60\) must be at least resolve_after_s \(600\)"
    with pytest.raises(ConfigError, match=refused):
        load_config_data({"engine": {"resolve_after_s": 600, "alert_resolve_after_s": 60}}, source="a.yaml",
                         base_dir=tmp_path)
    def quiet_s(engine: dict[str, float]) -> float:
        return load_config_data({"engine": engine}, source="a.yaml", base_dir=tmp_path).engine.alert_quiet_s

    assert quiet_s({"resolve_after_s": 600}) == 18000.0  # unset: 5 h, or resolve_after_s when longer
    assert quiet_s({"resolve_after_s": 2 * 86400.0}) == 2 * 86400.0
    assert quiet_s({"resolve_after_s": 600, "alert_resolve_after_s": 900}) == 900.0
