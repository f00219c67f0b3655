"""Execute: the actuators (one module each), the process supervisor and verification."""

from __future__ import annotations

from typing import Any


def builtin_actuators() -> list[type[Any]]:
    """The actuator classes shipped with autonomic, registered by their ``type``."""
    from autonomic.execute.config_file import ConfigActuator
    from autonomic.execute.docker_actuator import DockerActuator
    from autonomic.execute.http import HttpActuator
    from autonomic.execute.kubernetes_actuator import KubernetesActuator
    from autonomic.execute.process import ProcessActuator
    from autonomic.execute.shell import ShellActuator
    from autonomic.execute.systemd_actuator import SystemdActuator

    return [ProcessActuator, ConfigActuator, ShellActuator, HttpActuator, DockerActuator, SystemdActuator,
            KubernetesActuator]
