"""One collection of services whose containers are on a Docker engine that hangs.

    python benchmarks/units.py --json

A real UNIX socket accepts connections and never answers (a Docker engine wedged: the daemon's
API goroutines stuck, the socket still there). ``--containers`` services are bound to it through
the docker actuator (``timeout_s`` ``--timeout``), watched by their units' state, no probe. An
engine times one collection twice, side by side in one run: with the rule that a manager leaving
2 reads in a row unanswered is not asked the rest of the collection (as shipped), and with that
rule off (``UNANSWERED_IN_A_ROW`` set out of reach: every container read, one after another in
the engine's lane, as every collection did before). Prints one line ``{"containers",
"timeout_s", "skip_s", "every_s", "ratio", "reads_skip", "reads_every", "up_sampled"}``: the two
collections' seconds, their ratio, the connections each made to the engine, and how many
services got an ``up`` sample (0 and 0: unknown is not down).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from autonomic.clock import ManualClock
from autonomic.config import load_config_data
from autonomic.engine import Engine
from autonomic.knowledge import Store
from autonomic.monitor import unanswered


@contextlib.contextmanager
def _hung_engine(path: Path) -> Iterator[list[socket.socket]]:
    """A UNIX socket at ``path`` accepting every connection and answering none; the connections."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(256)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield held
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()


def _collect_s(sock: Path, containers: int, timeout: float, state: Path) -> tuple[float, int]:
    data = {"engine": {"state_dir": str(state), "host_metrics": False},
            "services": [{"name": f"s{i}", "actuators": {"docker": {"container": f"c{i}", "base_url": f"unix://{sock}",
                                                                    "timeout_s": timeout}}}
                         for i in range(containers)],
            "builtin_patterns": False}
    engine = Engine(load_config_data(data, source="bench.yaml", base_dir=state), store=Store("sqlite://"),
                    clock=ManualClock())
    try:
        started = time.perf_counter()
        engine.collect(engine.clock.now())
        elapsed = time.perf_counter() - started
        up = sum(engine.series.latest(f"s{i}", "up") is not None for i in range(containers))
    finally:
        engine.shutdown()
    return elapsed, up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # each unread unit says so once; the line below says it all
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "docker.sock"
        with _hung_engine(sock) as held:
            skip_s, up_skip = _collect_s(sock, args.containers, args.timeout, Path(tmp) / "a")
            reads_skip = len(held)
            shipped = unanswered.UNANSWERED_IN_A_ROW
            unanswered.UNANSWERED_IN_A_ROW = 10**9  # the rule off: every container read
            try:
                every_s, up_every = _collect_s(sock, args.containers, args.timeout, Path(tmp) / "b")
            finally:
                unanswered.UNANSWERED_IN_A_ROW = shipped
            reads_every = len(held) - reads_skip
    out = {"containers": args.containers, "timeout_s": args.timeout, "skip_s": round(skip_s, 3),
           "every_s": round(every_s, 3), "ratio": round(every_s / skip_s, 2), "reads_skip": reads_skip,
           "reads_every": reads_every, "up_sampled": [up_skip, up_every]}
    print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
