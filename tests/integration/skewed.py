"""``python skewed.py SECONDS autonomic-args...``: the ``autonomic`` command line in a process whose
wall clock (``time.time``, ``time.time_ns``) is SECONDS ahead (negative: behind) of the host's, as
on a replica whose machine's clock is off. Monotonic clocks are left alone, as skew leaves them;
the host's clock is not touched."""

from __future__ import annotations

import runpy
import sys
import time

skew = float(sys.argv[1])
_time, _time_ns = time.time, time.time_ns
time.time = lambda: _time() + skew
time.time_ns = lambda: _time_ns() + int(skew * 1e9)
sys.argv = ["autonomic", *sys.argv[2:]]
runpy.run_module("autonomic.cli", run_name="__main__")
