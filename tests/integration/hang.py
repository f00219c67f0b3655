"""``python hang.py BLOCK CALLS autonomic-args...``: the ``autonomic`` command line in a process whose
HTTP actuator's ``apply`` never returns while the file BLOCK exists (a driver or a library call
without a timeout: the engine's loop is stuck in it), and returns ``{"hung": true}`` once BLOCK is
removed. Each call is noted as a line in the file CALLS first."""

from __future__ import annotations

import os
import runpy
import sys
import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from autonomic.execute.http import HttpActuator
from autonomic.protocols import Target

block, calls = sys.argv[1], sys.argv[2]


def apply(self: HttpActuator, target: Target, params: BaseModel, key: str,
          snapshot: Mapping[str, Any]) -> dict[str, Any]:
    with open(calls, "a") as out:
        out.write(f"apply {key}\n")
    while os.path.exists(block):
        time.sleep(0.05)
    return {"hung": True}


HttpActuator.apply = apply  # type: ignore[method-assign]
sys.argv = ["autonomic", *sys.argv[3:]]
runpy.run_module("autonomic.cli", run_name="__main__")
