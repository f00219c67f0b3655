"""One collection of a fleet whose servers partly hang: one after another vs in lanes.

    python benchmarks/collect.py --json

Starts ``--services`` real HTTP servers on loopback ports, one per service, in a process of
their own: ``--hung`` of them listen and never answer (a partitioned rack: the connection is
made, no answer comes), the others answer 200 at once. With ``--hang-as trickle`` the hung ones
answer instead with a status line, then a header a byte every 0.2 s for ``--trickle-s`` (a broken
proxy, a slowloris): each read comes well within the timeout, only the whole exchange does not.
An engine probes each (``timeout_s`` ``--timeout``) and, in the same run, side by side, one
collection is timed with ``engine.collect_workers: 1`` (every source one after another, as before
lanes) and with ``--workers`` lanes at once. Prints one line ``{"services", "hung", "hang_as",
"timeout_s", "workers", "sequential_s", "lanes_s", "ratio", "misread"}``:
``ratio`` is sequential_s / lanes_s; ``misread`` counts, per mode, the services read otherwise than
they are (a hung one up, an answering one down: on a starved machine an answer can miss the
timeout), 0 and 0 when both read every verdict right.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import multiprocessing
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path

from autonomic.clock import ManualClock
from autonomic.config import load_config_data
from autonomic.engine import Engine
from autonomic.knowledge import Store


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _trickle(sock: socket.socket, seconds: float, stop: Event) -> None:
    """Answer every connection to ``sock`` with a status line, then a header a byte every 0.2 s
    for ``seconds``; until ``stop``."""
    def answer(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            until = time.monotonic() + seconds
            while time.monotonic() < until and not stop.is_set():
                conn.sendall(b"a")
                time.sleep(0.2)
            conn.sendall(b"\r\nContent-Length: 0\r\n\r\n")

    sock.settimeout(0.5)
    while not stop.is_set():
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        threading.Thread(target=answer, args=(conn,), daemon=True).start()


def _serve(answering: int, hung: set[int], total: int, ports: Connection, stop: Event,
           trickle_s: float | None = None) -> None:
    """In a process of its own (the servers are not to share the engine's interpreter lock, as
    they do not in a deployment): ``total`` ports, those in ``hung`` listening and never answering
    (the kernel's backlog takes the connection; with ``trickle_s``, trickling their headers for
    that long, see :func:`_trickle`), the others HTTP servers answering 200; their ports sent on
    ``ports``; until ``stop``."""
    with ExitStack() as stack:
        found = []
        for i in range(total):
            if i in hung:
                sock = stack.enter_context(socket.socket())
                sock.bind(("127.0.0.1", 0))
                sock.listen(64)
                if trickle_s is not None:
                    threading.Thread(target=_trickle, args=(sock, trickle_s, stop), daemon=True).start()
                found.append(sock.getsockname()[1])
            else:
                server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
                threading.Thread(target=server.serve_forever, daemon=True).start()
                stack.callback(server.server_close)
                stack.callback(server.shutdown)
                found.append(server.server_address[1])
        ports.send(found)
        stop.wait()


@contextmanager
def _fleet(total: int, hung: set[int], trickle_s: float | None = None) -> Iterator[list[int]]:
    receive, send = multiprocessing.Pipe(duplex=False)
    stop = multiprocessing.Event()
    proc = multiprocessing.Process(target=_serve, args=(total - len(hung), hung, total, send, stop, trickle_s),
                                   daemon=True)
    proc.start()
    try:
        yield receive.recv()
    finally:
        stop.set()
        proc.join(10)


def _collect_s(ports: list[int], timeout: float, workers: int, state: Path) -> tuple[float, list[float]]:
    data = {"engine": {"state_dir": str(state), "host_metrics": False, "collect_workers": workers},
            "services": [{"name": f"s{i}", "probes": [{"url": f"http://127.0.0.1:{port}/health", "timeout_s": timeout}]}
                         for i, port in enumerate(ports)],
            "builtin_patterns": False}
    engine = Engine(load_config_data(data, source="bench.yaml", base_dir=state), store=Store("sqlite://"),
                    clock=ManualClock())
    try:
        gc.collect()  # the tick collects with the cyclic collector paused (engine._collector_paused): so here
        gc.disable()
        started = time.perf_counter()
        engine.collect(engine.clock.now())
        elapsed = time.perf_counter() - started
        gc.enable()
        read = [engine.series.latest(f"s{i}", "probe_ok") for i in range(len(ports))]
    finally:
        engine.shutdown()
    return elapsed, [r[1] if r else -1.0 for r in read]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=40)
    parser.add_argument("--hung", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--hang-as", choices=["silent", "trickle"], default="silent")
    parser.add_argument("--trickle-s", type=float, default=120.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 0 <= args.hung <= args.services:
        parser.error("--hung must be between 0 and --services")
    # the hung ones spread over the fleet, as a partition hits a rack, not the list's end
    hung = {round(i * args.services / args.hung) for i in range(args.hung)} if args.hung else set()
    trickle_s = args.trickle_s if args.hang_as == "trickle" else None
    with _fleet(args.services, hung, trickle_s) as ports, tempfile.TemporaryDirectory() as tmp:
        sequential_s, seq_read = _collect_s(ports, args.timeout, 1, Path(tmp) / "a")
        lanes_s, lanes_read = _collect_s(ports, args.timeout, args.workers, Path(tmp) / "b")
    expected = [0.0 if i in hung else 1.0 for i in range(args.services)]
    out = {"services": args.services, "hung": len(hung), "hang_as": args.hang_as, "timeout_s": args.timeout,
           "workers": args.workers,
           "sequential_s": round(sequential_s, 3), "lanes_s": round(lanes_s, 3),
           "ratio": round(sequential_s / lanes_s, 2),
           "misread": [sum(a != b for a, b in zip(read, expected, strict=True)) for read in (seq_read, lanes_read)]}
    print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
