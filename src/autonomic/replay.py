"""``autonomic replay``: the whole loop in shadow over recorded metrics.

The recording (long CSV ``timestamp,service,metric,value``) is played through a real
:class:`~autonomic.engine.Engine` built with ``shadow_only``: a manual clock steps from the
first sample to the last at the config's interval, detectors find, incidents open, diagnoses
rank patterns (and root causes), and every decision is taken with its gates and recorded
with what it would have done. Nothing is executed: no actuator is called, no supervised
service is started, no notification leaves the process, and the store is in memory, so the
engine's own database is never touched.

With a config, a pattern a service cannot carry out (an actuator type it does not bind, a
runbook its shell binding lacks) is passed over exactly as the live engine passes it over, so
the replay shows only decisions the engine could make. Without one, the recording's services
bind nothing, and every remedy is taken as one they could run (``bindings_checked: false``).
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from pathlib import Path
from typing import Any

from autonomic.clock import ManualClock
from autonomic.config import SERVICE_NAME, Config, load_config_data
from autonomic.engine import Engine
from autonomic.errors import ConfigError, Problem
from autonomic.knowledge import Store
from autonomic.model import Level, Notification
from autonomic.monitor.replay import ReplaySource
from autonomic.oversight.notify import Dispatcher


class _Kept:
    """Keeps what the engine would have told people (a notifier that sends nothing)."""

    name = "kept"

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> None:
        self.sent.append(notification)


def replay_config(replay: ReplaySource, state_dir: Path) -> Config:
    """Without a config file: the recording's services with default thresholds and trends,
    the built-in patterns, every decision at autonomy auto (then shadowed). A service name a
    config could not hold (``WEB``, ``wéb``) is a ConfigError naming the recording and the name."""
    source = replay.name.removeprefix("replay:")
    bad = [name for name in replay.services if not re.fullmatch(SERVICE_NAME, name)]
    if bad:
        raise ConfigError([Problem(source, None, "service", f"{name!r} is not a service name autonomic accepts "
                                   "(lowercase letters, digits, _ and -, first a letter or digit, at most 63): "
                                   "rename it in the recording") for name in bad])
    services = [{"name": name} for name in replay.services if name != "host"]
    data = {"engine": {"host_metrics": "host" in replay.services, "state_dir": str(state_dir)},
            "services": services, "policy": {"autonomy": "auto"}}
    return load_config_data(data, source="<replay defaults>", base_dir=Path.cwd())


def run_replay(replay: ReplaySource, config: Config, interval_s: float | None = None, *,
               assume_bound: bool = False) -> dict[str, Any]:
    """Play ``replay`` through a shadow-only engine; the summary ``autonomic replay --json`` prints.
    ``assume_bound`` (for :func:`replay_config`'s services, which bind nothing): take every
    pattern's remedy as one the service could run, instead of passing it over as the engine does.
    The config's ``state_dir`` is not touched (a temporary folder stands in): a replay run as
    root before the engine's first start made it, root's and 0700, and the engine could not
    start; nor are its pause files read (a replay says what the engine would do, not what a
    pause on this host holds back)."""
    with tempfile.TemporaryDirectory(prefix="autonomic-replay-") as scratch:
        engine_spec = config.engine.model_copy(update={"state_dir": scratch})
        return _run(replay, dataclasses.replace(config, spec=config.spec.model_copy(update={"engine": engine_spec})),
                    interval_s, assume_bound=assume_bound)


def _run(replay: ReplaySource, config: Config, interval_s: float | None, *, assume_bound: bool) -> dict[str, Any]:
    step = interval_s or config.engine.interval_s
    clock = ManualClock(replay.first_ts)
    kept = _Kept()
    store = Store("sqlite://")
    engine = Engine(config, clock=clock, store=store, sources=[replay], shadow_only=True, assume_bound=assume_bound,
                    notifiers=Dispatcher([(kept, Level.INFO)], synchronous=True, dedup_s=0))
    engine.start()
    ticks = 0
    while clock.now() <= replay.last_ts + step:
        engine.tick()
        ticks += 1
        clock.advance(step)
    incidents = sorted(store.incidents(limit=1_000_000), key=lambda i: i.opened_at)
    decisions = []
    for inc in incidents:
        for d in store.decisions(inc.id):
            # the shadow gate denies every decision here: it holds nothing back, the others do
            held_back = [g.said() for g in d.gates if not g.passed and g.gate != "shadow"]
            decisions.append({
                "incident": inc.id, "service": inc.service, "cause": inc.cause, "ts": d.ts,
                "would_have": d.shadow_verdict.value if d.shadow_verdict else None,
                "action": d.action.model_dump() if d.action else None, "pattern": d.pattern_id,
                "held_back_by": held_back,
            })
    summary = {
        "samples": len(replay), "skipped_rows": replay.skipped, "ticks": ticks,
        "bindings_checked": not assume_bound,
        "from": replay.first_ts, "to": replay.last_ts,
        "findings_recorded": sum(i.finding_count for i in incidents),
        "incidents": [{"id": i.id, "service": i.service, "cause": i.cause, "kind": i.kind.value,
                       "opened_at": i.opened_at, "summary": i.summary} for i in incidents],
        "decisions": decisions,
        "would_have_acted": sum(1 for d in decisions if d["would_have"] == "approved"),
        "actions_executed": len(store.actions()),
        "notifications": len(kept.sent),
    }
    engine.shutdown()
    return summary
