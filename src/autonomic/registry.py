"""Plug-ins by the ``type:`` used in YAML. An object, not a module global: each engine (and
each test) builds its own with :func:`default_registry` and may add to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from autonomic.errors import ConfigError
from autonomic.yamlio import did_you_mean

Kind = Literal["actuator", "source", "notifier", "detector"]


class Registry:
    """Maps (kind, type name) to a plug-in class or factory."""

    def __init__(self) -> None:
        self._plugins: dict[str, dict[str, Any]] = {
            "actuator": {},
            "source": {},
            "notifier": {},
            "detector": {},
        }

    def register(self, kind: Kind, type_name: str, plugin: Any) -> None:
        table = self._plugins[kind]
        if type_name in table and table[type_name] is not plugin:
            raise ValueError(f"{kind} type {type_name!r} is registered twice")
        table[type_name] = plugin

    def get(self, kind: Kind, type_name: str) -> Any:
        """The plug-in for ``type_name``; if absent, ConfigError naming the known type nearest to it,
        or all of them when none is near."""
        table = self._plugins[kind]
        try:
            return table[type_name]
        except KeyError:
            known = did_you_mean(type_name, table) or f" (known: {', '.join(sorted(table)) or 'none'})"
            raise ConfigError(f"unknown {kind} type {type_name!r}{known}") from None

    def types(self, kind: Kind) -> list[str]:
        return sorted(self._plugins[kind])

    def actuator(self, type_name: str) -> Any:
        return self.get("actuator", type_name)


def default_registry(extra: Callable[[Registry], None] | None = None) -> Registry:
    """A registry holding every built-in plug-in."""
    from autonomic.execute import builtin_actuators
    from autonomic.oversight.notify import builtin_notifiers

    reg = Registry()
    for cls in builtin_actuators():
        reg.register("actuator", cls.type, cls)
    for name, notifier_cls in builtin_notifiers().items():
        reg.register("notifier", name, notifier_cls)
    if extra is not None:
        extra(reg)
    return reg
