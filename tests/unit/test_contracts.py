"""The contract every registered plug-in must meet (river-style): a test per built-in."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from autonomic.clock import SystemClock
from autonomic.protocols import Actuator, ActuatorContext, Notifier
from autonomic.registry import Registry, default_registry
from autonomic.testing import FakeActuator, FakeNotifier

REGISTRY = default_registry()


@pytest.mark.parametrize("type_name", REGISTRY.types("actuator"))
def test_every_actuator_meets_the_protocol_and_rejects_unknown_params(type_name: str, tmp_path: Path) -> None:
    cls = REGISTRY.actuator(type_name)
    assert cls.type == type_name
    assert issubclass(cls.Params, BaseModel) and issubclass(cls.Binding, BaseModel)
    assert cls.Params.model_config.get("extra") == "forbid"
    assert cls.Binding.model_config.get("extra") == "forbid"
    assert cls.Params.model_config.get("frozen") is True
    actuator = cls(ActuatorContext(clock=SystemClock(), state_dir=tmp_path))
    assert isinstance(actuator, Actuator)
    with pytest.raises(ValidationError):
        cls.Params.model_validate({"surely_not_a_param": 1})


@pytest.mark.parametrize("type_name", REGISTRY.types("notifier"))
def test_every_notifier_meets_the_protocol(type_name: str, tmp_path: Path) -> None:
    cls = REGISTRY.get("notifier", type_name)
    notifier = cls(path=tmp_path / "n.jsonl")
    assert isinstance(notifier, Notifier)


def test_the_fakes_meet_the_protocols() -> None:
    assert isinstance(FakeActuator(), Actuator)
    assert isinstance(FakeNotifier(), Notifier)


def test_an_unknown_type_names_the_known_ones() -> None:
    from autonomic.errors import ConfigError

    with pytest.raises(ConfigError, match=r"known: .*config, .*http, .*process, shell"):
        REGISTRY.actuator("teleport")  # none near it: every known type named
    with pytest.raises(ConfigError, match=r"^unknown actuator type 'kubernets'; did you mean 'kubernetes'\?$"):
        REGISTRY.actuator("kubernets")  # one near it: named instead of the list
    with pytest.raises(ValueError, match="twice"):
        reg = Registry()
        reg.register("actuator", "x", object())
        reg.register("actuator", "x", object())
