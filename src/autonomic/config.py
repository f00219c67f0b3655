"""autonomic.yaml: the schema, and loading it once into frozen, typed objects.

Loading collects every problem in the config file and in every pattern file it names and
raises one :class:`~autonomic.errors.ConfigError` whose ``problems`` each read
``file:line: field: message``. Relative paths in the file (state_dir, pattern paths,
actuator ``repo`` and ``cwd``) are taken relative to the config file's folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from autonomic.analyze.anomaly import AnomalySpec
from autonomic.analyze.forecast import SeasonalTrendSpec
from autonomic.analyze.thresholds import Thresholds, maximum_kind
from autonomic.analyze.trend import TrendSpec
from autonomic.errors import ConfigError, Problem
from autonomic.knowledge.retention import DAY_S, RetentionSpec
from autonomic.model import NAME, PROCESS_METRICS, UNIT_METRICS, ActionSpec, Goal, Pattern, check_name
from autonomic.monitor.probe import HttpProbeSpec
from autonomic.monitor.prometheus import PrometheusSpec
from autonomic.monitor.promquery import PromQuerySpec
from autonomic.monitor.series import DEFAULT_CAPACITY
from autonomic.monitor.unitstate import unit_kind
from autonomic.oversight.notify import ConsoleSpec, NotifierSpec
from autonomic.oversight.reports import ReportSchedule
from autonomic.oversight.server import ApiSpec
from autonomic.plan.diagnose import cannot_run
from autonomic.plan.policy import PolicyConfig
from autonomic.printable import counted, listed
from autonomic.redact import credentials, is_credential_header
from autonomic.registry import Registry
from autonomic.yamlio import YamlDoc, did_you_mean, load_yaml, problems_from

_PATH_KEYS = ("repo", "cwd", "kubeconfig")


def _metrics_type(v: Any) -> str:
    return str(v.get("type", "prometheus")) if isinstance(v, dict) else str(getattr(v, "type", "prometheus"))


# ``metrics:`` entries: a /metrics endpoint to scrape, or a PromQL query against a Prometheus server
MetricsSpec = Annotated[
    Annotated[PrometheusSpec, Tag("prometheus")] | Annotated[PromQuerySpec, Tag("promql")],
    Discriminator(_metrics_type),
]


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LeaderElectionSpec(_Spec):
    """``engine.leader_election:``: several replicas of the engine over one database, one of them
    acting (see :mod:`autonomic.knowledge.lease`). A standby takes over once the leader has not
    renewed its lease for ``lease_s`` (measured on the standby's own clock); the leader stops acting
    once it has gone ``renew_s`` without renewing; both try every ``retry_s``."""

    enabled: bool = False
    lease_s: float = Field(default=15.0, gt=0, le=3600)
    renew_s: float = Field(default=10.0, gt=0, le=3600)
    retry_s: float = Field(default=2.0, gt=0, le=600)
    identity: str | None = Field(default=None, min_length=1, max_length=200)  # default: host name, pid, random
    # After taking over a lease its holder did not give up (it died, froze or lost the database),
    # an action it left running or rolling back is looked at only this long after start: an
    # actuator call of the old leader may still be in flight, and recovery would otherwise ask the
    # actuator too early and apply it again. The old leader starts no call (no retry either) once
    # it has gone renew_s without renewing, and the lease is taken no sooner than lease_s after
    # that renewal, so a call in flight ends at most (its longest call) - (lease_s - renew_s)
    # after the takeover. None (the default): that, per action, from its actuator's call_limit_s
    # with its params and binding (see Engine._takeover_grace_s; BENCHMARKS.md, failover, has the
    # measurement). A number: that for every action.
    takeover_grace_s: float | None = Field(default=None, ge=0, le=3600)

    @model_validator(mode="after")
    def _ordered(self) -> LeaderElectionSpec:
        if not self.retry_s < self.renew_s < self.lease_s:
            raise ValueError(f"need retry_s < renew_s < lease_s (got {self.retry_s:g}, {self.renew_s:g}, "
                             f"{self.lease_s:g}): the leader must stop acting before a standby may take over")
        return self


_ALERT_QUIET_S = 5 * 3600.0  # above Alertmanager's default repeat_interval (4 h)


class EngineSpec(_Spec):
    """``engine:``: how the loop runs."""

    interval_s: float = Field(default=5.0, gt=0, le=3600)
    state_dir: str = ".autonomic"
    database: str | None = None  # SQLAlchemy URL; default sqlite file in state_dir
    host_metrics: bool = True
    resolve_after_s: float = Field(default=120.0, gt=0)  # quiet this long -> incident closed
    # ... but while an Alertmanager alert of the incident fires (no resolved notification yet),
    # this long: Alertmanager resends a firing alert only every repeat_interval (4 h by default)
    # (None: 5 h, or resolve_after_s when that is longer)
    alert_resolve_after_s: float | None = Field(default=None, gt=0)
    settle_s: float = Field(default=30.0, ge=0)  # after an action ends, no new one on that service
    approval_ttl_s: float = Field(default=3600.0, gt=0)
    # An action decided but not started within this long (the engine was down, say) is not run
    # on an old decision: it is cancelled and the incident decided again through every gate.
    decision_ttl_s: float = Field(default=300.0, gt=0)
    time_scale: float = Field(default=1.0, gt=0, le=1.0)  # shrinks verification windows (demo, tests)
    stop_services_on_exit: bool = True
    # how often detectors' learned state (anomaly baselines, seasonal history) is written to
    # state_dir/detectors.json; it is also written at shutdown and read back at start
    checkpoint_s: float = Field(default=300.0, gt=0)
    # The loop counts as stuck (the lease is no longer renewed, /healthz fails) once it has made
    # no progress for this long; None: worked out from the config (the longest step the loop can
    # take: see Engine.stuck_after_s), which the engine logs at start.
    stuck_after_s: float | None = Field(default=None, gt=0, le=86_400)
    # A notification a notifier gave up on is offered to it again (30 s, 1 min, ... at most 10 min
    # apart) until this long after it was made, then given up. One setting for the outbox, not one
    # per notifier: the outbox keeps one entry per notification, given up in one audited event.
    # At least 30 s (one retry), at most a week.
    notify_retry_for_s: float = Field(default=3600.0, ge=30, le=7 * 86_400)
    # HTTP sources (probes, scrapes, PromQL queries) are collected in lanes, one per server they
    # ask (scheme, host and port): a lane's sources one after another, up to this many lanes at
    # once, so servers that hang cost a collection the slowest lane's timeouts, not the sum of all
    # (a partitioned rack of 50 services with 2 s probes: 100 s per collection). 1: one after another.
    collect_workers: int = Field(default=8, ge=1, le=64)
    leader_election: LeaderElectionSpec = Field(default_factory=LeaderElectionSpec)

    @property
    def alert_quiet_s(self) -> float:
        """How long an incident whose Alertmanager alert still fires may go without a finding."""
        return self.alert_resolve_after_s or max(_ALERT_QUIET_S, self.resolve_after_s)

    @model_validator(mode="after")
    def _alerts_wait_longer(self) -> EngineSpec:
        if self.alert_resolve_after_s is not None and self.alert_resolve_after_s < self.resolve_after_s:
            raise ValueError(f"alert_resolve_after_s ({self.alert_resolve_after_s:g}) must be at least resolve_after_s "
                             f"({self.resolve_after_s:g}): an incident whose alert still fires is not quieter than one "
                             "with no finding")
        return self


class FallbackSpec(_Spec):
    """A service's remedy for failures no pattern knows; always needs a person's approval."""

    type: str
    params: dict[str, Any] = Field(default_factory=dict)


SERVICE_NAME = NAME  # what a service may be called (model.NAME, as a goal)


class ServiceSpec(_Spec):
    """One entry of ``services:``."""

    name: str
    type: str = "generic"
    depends_on: list[str] = Field(default_factory=list)
    group: str | None = None  # services sharing a group share a blast-radius budget
    probes: list[HttpProbeSpec] = Field(default_factory=list)
    metrics: list[MetricsSpec] = Field(default_factory=list)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    trends: list[TrendSpec] | None = None  # None: the default trend checks
    # breach forecasts on top of a learned daily profile (days of history; see analyze/forecast.py)
    seasonal_trends: list[SeasonalTrendSpec] = Field(default_factory=list)
    # metrics watched for departures from their own baseline (see analyze/anomaly.py)
    anomalies: list[AnomalySpec] = Field(default_factory=list)
    # service-level objectives whose error-budget burn is watched (see analyze/goals.py)
    goals: list[Goal] = Field(default_factory=list)
    actuators: dict[str, dict[str, Any]] = Field(default_factory=dict)
    fallback: FallbackSpec | None = None

    @model_validator(mode="after")
    def _metrics_not_sampled_otherwise(self) -> ServiceSpec:
        """A ``metrics:`` source may not record what the service's probes or its ``process``
        binding's supervisor sample already (a scrape renamed to ``up`` beside the supervisor's
        ``up``): the two would interleave into one series that says 1 and 0 in turn, never down
        for ``down_after``. (A unit's state leaves out what a source records: see ``unit_kind``.)"""
        others = {m: "probes" for m in ("probe_ok", "probe_latency_ms")} if self.probes else {}
        if "process" in self.actuators:
            others.update((m, "process binding's supervisor") for m in PROCESS_METRICS)
        clash = sorted(m for m in others if self.names(m))
        if clash:
            raise ValueError(f"{listed(clash, 'metric')} recorded by its metrics sources and sampled by its "
                             f"{' and '.join(sorted({others[m] for m in clash}))} too; a metric takes one series "
                             "(record it under another name)")
        return self

    def names(self, metric: str) -> bool:
        """Whether a ``metrics:`` source of this entry records ``metric`` by name: a ``promql``
        query's ``metric``, a ``prometheus`` scrape's ``rename`` to it (not a scrape keeping every
        sample, which may or may not hold one)."""
        return any((isinstance(m, PromQuerySpec) and m.metric == metric)
                   or (isinstance(m, PrometheusSpec) and metric in (m.rename or {}).values()) for m in self.metrics)

    def may_report(self, metric: str) -> bool:
        """Whether one of the sources this entry configures may sample ``metric`` of the service:
        its probes (``probe_ok``, ``probe_latency_ms``), a ``promql`` query recording it, a
        ``prometheus`` scrape renaming a sample to it or keeping every sample under its own name (no
        ``rename``), a ``process`` binding's supervisor (``up``; its other readings are not counted
        here), the state of the unit a systemd, docker or kubernetes binding names (``up``, and
        what else :data:`~autonomic.model.UNIT_METRICS` lists for it; see
        :func:`~autonomic.monitor.unitstate.unit_kind`)."""
        if self.probes and metric in ("probe_ok", "probe_latency_ms"):
            return True
        if metric == "up" and "process" in self.actuators:
            return True
        kind = unit_kind(self.actuators)
        if kind is not None and metric in UNIT_METRICS[kind]:
            return True
        for m in self.metrics:
            if isinstance(m, PromQuerySpec) and m.metric == metric:
                return True
            if isinstance(m, PrometheusSpec) and (not m.rename or metric in m.rename.values()):
                return True
        return False

    def sampled_metrics(self) -> list[str] | None:
        """The metrics the sources this entry configures sample of the service, as far as the config
        says: its probes' ``probe_ok`` and ``probe_latency_ms``, a ``process`` binding's supervisor's
        readings (:data:`~autonomic.model.PROCESS_METRICS`), what :data:`~autonomic.model.UNIT_METRICS`
        lists for the unit a systemd, docker or kubernetes binding names, a ``promql`` query's
        ``metric``, a ``prometheus`` scrape's ``rename`` targets. None when a scrape keeps every sample
        under its own name (no ``rename``): which those are is the endpoint's to say."""
        found: list[str] = []
        if self.probes:
            found += ["probe_ok", "probe_latency_ms"]
        if "process" in self.actuators:
            found += PROCESS_METRICS
        kind = unit_kind(self.actuators)
        if kind is not None:
            found += UNIT_METRICS[kind]
        for m in self.metrics:
            if isinstance(m, PromQuerySpec):
                found.append(m.metric)
            elif not m.rename:
                return None
            else:
                found += m.rename.values()
        return list(dict.fromkeys(found))

    @field_validator("name")
    @classmethod
    def _not_host(cls, v: str) -> str:
        check_name(v, "service")
        if v == "host":
            raise ValueError("'host' is reserved for this machine's own metrics")
        return v

    @field_validator("metrics")
    @classmethod
    def _one_source_per_metric(cls, v: list[MetricsSpec]) -> list[MetricsSpec]:
        """A metric is recorded by one source of the service: two (two queries, a query and a
        scrape's rename) would interleave their samples into one series, so ``sustain`` and a
        threshold would count a mix (as two rename keys onto one metric would, refused too)."""
        recorded = [m.metric for m in v if isinstance(m, PromQuerySpec)]
        recorded += [metric for m in v if isinstance(m, PrometheusSpec) for metric in m.rename.values()]
        twice = sorted({m for m in recorded if recorded.count(m) > 1})
        if twice:
            raise ValueError(f"{listed(twice, 'metric')} recorded by two sources; a metric takes one series")
        return v

    @field_validator("anomalies")
    @classmethod
    def _one_spec_per_metric(cls, v: list[AnomalySpec]) -> list[AnomalySpec]:
        metrics = [spec.metric for spec in v]
        twice = sorted({m for m in metrics if metrics.count(m) > 1})
        if twice:
            raise ValueError(f"{listed(twice, 'metric')} watched twice; give each metric one spec")
        return v

    @field_validator("goals")
    @classmethod
    def _unique_goals(cls, v: list[Goal]) -> list[Goal]:
        names = Counter(g.name for g in v)
        twice = sorted(n for n, k in names.items() if k > 1)
        if twice:
            raise ValueError(f"{listed(twice, 'goal name')} given twice; give each goal of a service its own name")
        return v


def _console() -> NotifierSpec:
    return ConsoleSpec(type="console")


# at most this many names compared, in all, to find the one a misspelt depends_on entry meant
# (about 0.4 s): past it, as in a fleet of 100,000 services, each such entry is still named at
# its own place, without the hint
_HINT_COMPARISONS = 20_000


class AutonomicSpec(_Spec):
    """The whole file."""

    engine: EngineSpec = Field(default_factory=EngineSpec)
    services: list[ServiceSpec] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list)
    builtin_patterns: bool = True
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    notifiers: list[NotifierSpec] = Field(default_factory=lambda: [_console()])
    reports: list[ReportSchedule] = Field(default_factory=list)  # scheduled delivery through the notifiers
    api: ApiSpec = Field(default_factory=ApiSpec)  # REST API and dashboard; 127.0.0.1 unless configured
    retention: RetentionSpec = Field(default_factory=RetentionSpec)  # how long history is kept

    @model_validator(mode="before")
    @classmethod
    def _empty_sections_are_defaults(cls, data: Any) -> Any:
        """A section left empty (``engine:`` with every key under it commented out, as in the
        README's outline) means its defaults, as if it were not there."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data

    @field_validator("services")
    @classmethod
    def _unique_services(cls, services: list[ServiceSpec]) -> list[ServiceSpec]:
        """Service names are unique (a repeat is reported under ``services``, naming it) and
        ``depends_on`` names only services of this file: each entry that does not is reported at
        its own place, ``services[i].depends_on[j]`` (and so its line), with the name meant when
        one is near."""
        counts = Counter(s.name for s in services)  # not names.count per name: a fleet is 100,000 names
        dupes = sorted(n for n, k in counts.items() if k > 1)
        if dupes:
            raise ValueError(f"service names must be unique: {', '.join(dupes)}")
        names = counts.keys()
        unknown: list[InitErrorDetails] = []
        budget = _HINT_COMPARISONS
        for i, svc in enumerate(services):
            for j, d in enumerate(svc.depends_on):
                if d in names:
                    continue
                hint = did_you_mean(d, names) if budget >= len(names) else ""
                budget -= len(names)
                unknown.append(InitErrorDetails(
                    type=PydanticCustomError("unknown_dependency", "{message}",
                                             {"message": f"no service named {d!r}{hint}"}),
                    loc=(i, "depends_on", j), input=d))
        if unknown:  # pydantic puts these under services (raised here, their places are kept)
            raise ValidationError.from_exception_data("services", unknown)
        return services


@dataclass(frozen=True)
class Config:
    """A loaded, validated configuration: the spec plus what was resolved from it."""

    spec: AutonomicSpec
    source: str  # the file it came from, or "<defaults>"
    base_dir: Path
    bindings: Mapping[str, Mapping[str, BaseModel]] = field(default_factory=dict)
    patterns: tuple[Pattern, ...] = ()
    # what is valid but likely not meant (a goal on a metric nothing samples): `autonomic check` says so
    warnings: tuple[Problem, ...] = ()

    @property
    def engine(self) -> EngineSpec:
        return self.spec.engine

    @property
    def services(self) -> list[ServiceSpec]:
        return self.spec.services

    def service(self, name: str) -> ServiceSpec | None:
        return self._by_name.get(name)

    @cached_property
    def _by_name(self) -> dict[str, ServiceSpec]:
        return {s.name: s for s in self.spec.services}

    def group_members(self, group: str) -> frozenset[str]:
        """The names of the services in ``group`` (a blast-radius group)."""
        return self._groups.get(group, frozenset())

    @cached_property
    def _groups(self) -> dict[str, frozenset[str]]:
        groups: dict[str, set[str]] = {}
        for s in self.spec.services:
            if s.group:
                groups.setdefault(s.group, set()).add(s.name)
        return {g: frozenset(names) for g, names in groups.items()}

    @cached_property
    def fingerprint(self) -> str:
        """A short hash of what decides what the engine does: the services (with their bindings,
        thresholds and fallbacks), the policy, every pattern loaded (not where its file is: the
        same library installed elsewhere is the same), and the engine's timings. Two
        replicas with the same fingerprint act alike; what is each replica's own (its identity,
        state_dir, database URL, API, notifiers) is left out. Published in the lease, so a standby
        started with another config is told before it takes over (see LeaderElector)."""
        engine = self.spec.engine.model_dump(mode="json", exclude={"state_dir", "database", "leader_election"})
        doc = {"engine": engine, "services": [s.model_dump(mode="json") for s in self.spec.services],
               "policy": self.spec.policy.model_dump(mode="json"),
               "patterns": sorted((p.model_dump(mode="json", exclude={"source"}) for p in self.patterns),
                                  key=lambda p: str(p["id"]))}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def command(self) -> str:
        """``autonomic -c <this file, absolute>``: the command that reaches this config's store from
        any folder, for the commands the engine tells people to type (a bare ``autonomic`` opens
        the built-in defaults' store in the folder it is typed in). ``autonomic`` for the defaults."""
        if self.source == "<defaults>":
            return "autonomic"
        return f"autonomic -c {shlex.quote(str(self.base_dir / Path(self.source).name))}"

    @cached_property
    def secret_env_names(self) -> frozenset[str]:
        """The environment variables this configuration names as holding its secrets: the value
        of every ``*_env`` field (the API's webhook token and HMAC secret, notifiers' credentials,
        actuator bindings' tokens). They are autonomic's own: supervised services do not inherit them."""
        found: set[str] = set()
        _env_names(self.spec, found)
        for service_bindings in self.bindings.values():
            for binding in service_bindings.values():
                _env_names(binding, found)
        return frozenset(found)

    def secret_values(self) -> list[str]:
        """The secrets this configuration gives the process, as they are now: the value of each
        variable in :attr:`secret_env_names` that is set, the database URL's password, and the
        http actuator bindings' credential headers written in the file (Authorization, X-Api-Key,
        ...; redact.is_credential_header). For
        :class:`autonomic.redact.Secrets`; read when asked, never logged."""
        found = [os.environ[name] for name in sorted(self.secret_env_names) if os.environ.get(name)]
        if self.spec.engine.database:
            found.extend(credentials(self.spec.engine.database, password_only=True))
        for service_bindings in self.bindings.values():
            headers = getattr(service_bindings.get("http"), "headers", None)
            if isinstance(headers, dict):
                found.extend(v for k, v in headers.items() if isinstance(v, str) and is_credential_header(k))
        return found

    @property
    def pattern_paths(self) -> list[Path]:
        """Where this config's patterns are read from: the built-in library (unless
        ``builtin_patterns: false``), then each ``patterns:`` entry, relative to the file's folder."""
        builtin = [builtin_patterns_dir()] if self.spec.builtin_patterns else []
        return [*builtin, *(_resolve(self.base_dir, p) for p in self.spec.patterns)]

    @property
    def state_dir(self) -> Path:
        return _resolve(self.base_dir, self.spec.engine.state_dir)

    @property
    def database_url(self) -> str:
        """The store's SQLAlchemy URL: ``engine.database``, else a SQLite file in state_dir. A
        SQLite file given by a relative path is relative to the config file's folder, as
        state_dir is, so every command, run from any directory, opens the engine's store."""
        if self.spec.engine.database:
            return _anchored_sqlite(self.spec.engine.database, self.base_dir)
        return f"sqlite:///{(self.state_dir / 'autonomic.db').resolve()}"

    @property
    def archive_dir(self) -> Path:
        """Where pruned audit events are archived: ``retention.archive_dir``, else
        state_dir/audit-archive (a relative path is relative to the config file's folder)."""
        given = self.spec.retention.archive_dir
        return _resolve(self.base_dir, given) if given else self.state_dir / "audit-archive"

    @property
    def audit_kept(self) -> str | None:
        """Why retention keeps the audit log in the database instead of archiving and pruning it, or
        None: with leader election and no ``retention.archive_dir`` the archive would be in one
        host's own state_dir (a pod's emptyDir), not where the other replicas, or this one
        restarted, find it. The engine and ``autonomic prune`` both go by it."""
        if self.engine.leader_election.enabled and self.spec.retention.archive_dir is None:
            return (f"with leader election the archive would be in this host's own state_dir ({self.archive_dir}); "
                    "set retention.archive_dir to a folder every replica mounts")
        return None

    def fallback_action(self, service: str) -> ActionSpec | None:
        svc = self.service(service)
        if svc is None or svc.fallback is None:
            return None
        return ActionSpec(type=svc.fallback.type, target=service, params=dict(svc.fallback.params))


_LEAVES = frozenset({str, int, float, bool, type(None)})


def _env_names(value: Any, found: set[str]) -> None:
    """Add to ``found`` the value of every ``*_env`` field or key in ``value``, recursively."""
    if isinstance(value, BaseModel):
        items: Any = ((name, getattr(value, name)) for name in type(value).model_fields)
    elif isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = (("", v) for v in value)
    else:
        return
    for name, v in items:
        if isinstance(name, str) and name.endswith("_env") and isinstance(v, str):
            found.add(v)
        elif isinstance(name, str) and name.endswith("_env") and isinstance(v, dict):  # headers_env
            found.update(x for x in v.values() if isinstance(x, str))
        elif type(v) not in _LEAVES:  # a fleet's config has millions of plain values: not walked
            _env_names(v, found)


def builtin_patterns_dir() -> Path:
    """The built-in pattern library (``autonomic/patterns/``, shipped in the package)."""
    return Path(__file__).resolve().parent / "patterns"


def _anchored_sqlite(url: str, base: Path) -> str:
    """``url`` with a relative SQLite file path made absolute under ``base``; any other URL
    (PostgreSQL, in-memory SQLite, an absolute path, one that does not parse) as given."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return url  # the store refuses it, naming it
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or database in (None, "", ":memory:") or database.startswith("file:"):
        return url
    path = _resolve(base, database)
    return url if path == Path(database) else parsed.set(database=str(path.resolve())).render_as_string(False)


def _resolve(base: Path, p: str) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() else (base / path)


def default_config(registry: Registry | None = None) -> Config:
    """No file: watch this host in observe mode with the built-in defaults."""
    return load_config_data({}, source="<defaults>", base_dir=Path.cwd(), registry=registry)


def load_config(path: Path | str, registry: Registry | None = None) -> Config:
    """Parse and validate ``path`` and the pattern files it names; ConfigError lists every problem."""
    path = Path(path)
    doc = load_yaml(path)
    return load_config_data(doc.data, source=str(path), base_dir=path.resolve().parent, registry=registry,
                            doc=doc)


def _trends_beyond_history(trends: list[TrendSpec] | None, loc: list[str | int], interval_s: float,
                           source: str, doc: YamlDoc, steps: Mapping[str, float] | None = None) -> list[Problem]:
    """A trend spec whose required history (``span_s``) is longer than the series store holds
    at ``interval_s``, or whose ``window_s`` holds fewer than its ``min_points`` samples, would
    never forecast: one problem each. A metric a PromQL range query records (``steps``: its
    ``step_s`` by metric) has a point every ``step_s``, whatever the interval; any other, one a
    collection, every ``interval_s``. (The default specs, when ``trends`` is unset, fit themselves
    to that history and interval: :func:`default_trend_specs`.)"""
    held = (DEFAULT_CAPACITY - 1) * interval_s
    out = []
    for j, trend in enumerate(trends or []):
        where = [*loc, j]
        step = (steps or {}).get(trend.metric)
        every, at = (step, f"its range query's step_s {step:g}") if step else (interval_s, f"interval_s {interval_s:g}")
        fits = math.floor(trend.window_s / every + 1e-9) + 1  # samples one window holds
        if fits < trend.min_points:
            out.append(Problem(source, doc.line_of(where), _dotted(where),
                               f"the {trend.metric} trend's window_s {trend.window_s:g} holds {fits} samples at "
                               f"{at}, fewer than its min_points {trend.min_points}: it "
                               f"would never forecast; make window_s at least "
                               f"{trend.min_points * every:g}"))
        if trend.span_s > held:
            out.append(Problem(source, doc.line_of(where), _dotted(where),
                               f"the {trend.metric} trend needs {trend.span_s:g} s of history (min_span_s, "
                               f"default half of window_s) but the series store keeps {DEFAULT_CAPACITY} samples, "
                               f"{held:g} s at interval_s {interval_s:g}: it would never forecast"))
        if trend.long_window_s and 2 * trend.window_s > held:
            out.append(Problem(source, doc.line_of([*where, "long_window_s"]), _dotted([*where, "long_window_s"]),
                               f"the {trend.metric} trend's longer view needs {2 * trend.window_s:g} s of history "
                               f"(twice window_s) but the series store keeps {held:g} s at interval_s "
                               f"{interval_s:g}: it would never be used; set it to 0 or shorten window_s"))
    return out


def load_config_data(
    data: Any,
    *,
    source: str,
    base_dir: Path,
    registry: Registry | None = None,
    doc: YamlDoc | None = None,
) -> Config:
    from autonomic.plan.patterns import check_patterns, load_patterns
    from autonomic.registry import default_registry

    registry = registry or default_registry()
    if data is None:
        data = {}
    if doc is None:
        from autonomic.yamlio import load_yaml_text

        doc = load_yaml_text("{}", source)
    if not isinstance(data, dict):
        raise ConfigError([Problem(source, 1, "", "the file must hold a mapping (services:, policy:, ...)")])
    try:
        spec = AutonomicSpec.model_validate(data)
    except ValidationError as err:
        # report what the schema check cannot see too, so one run lists every problem
        raise ConfigError([*problems_from(err, doc, model=AutonomicSpec),
                           *_raw_bindings(data, base_dir, source, doc, registry)]) from None

    problems: list[Problem] = []
    bindings: dict[str, dict[str, BaseModel]] = {}
    for i, svc in enumerate(spec.services):
        svc_bindings = _bindings(svc.actuators, i, base_dir, source, doc, registry, problems)
        if svc.fallback is not None:
            loc: list[str | int] = ["services", i, "fallback"]
            try:
                actuator = registry.actuator(svc.fallback.type)
                actuator.Params.model_validate(svc.fallback.params)
            except ConfigError as err:
                problems.append(Problem(source, doc.line_of([*loc, "type"]), _dotted([*loc, "type"]),
                                        err.problems[0].message))
            except ValidationError as err:
                problems.extend(problems_from(err, doc, prefix=[*loc, "params"], model=actuator.Params))
            if svc.fallback.type not in svc.actuators:
                problems.append(Problem(source, doc.line_of(loc), _dotted(loc),
                                        f"fallback uses actuator {svc.fallback.type!r} "
                                        "but the service has no binding for it under actuators"))
        bindings[svc.name] = svc_bindings
        problems.extend(_trends_beyond_history(svc.trends, ["services", i, "trends"], spec.engine.interval_s,
                                               source, doc, {m.metric: m.step_s for m in svc.metrics
                                                             if isinstance(m, PromQuerySpec) and m.mode == "range"}))
        if spec.engine.leader_election.enabled and "process" in svc_bindings:
            loc = ["services", i, "actuators", "process"]
            problems.append(Problem(source, doc.line_of(loc), _dotted(loc),
                                    "a supervised process runs on this host, and engine.leader_election lets "
                                    "a replica on another host take over: bind it through systemd, docker or "
                                    "kubernetes instead, or turn leader election off"))

    pattern_paths = [builtin_patterns_dir()] if spec.builtin_patterns else []
    for i, p in enumerate(spec.patterns):
        resolved_path = _resolve(base_dir, p)
        if not resolved_path.exists():
            problems.append(Problem(source, doc.line_of(["patterns", i]), f"patterns[{i}]",
                                    f"no such file or folder: {resolved_path}"))
            continue
        pattern_paths.append(resolved_path)
    pattern_problems = check_patterns(pattern_paths, registry)
    problems.extend(pattern_problems)
    if problems:
        raise ConfigError(problems)
    patterns = load_patterns(pattern_paths, registry)
    lines = _verify_lines_missing(patterns, spec.services, bindings)
    if lines:
        raise ConfigError(lines)
    short = retention_too_short(spec, patterns)
    if short:
        raise ConfigError([Problem(source, doc.line_of(["retention", key]) if "retention" in data else 1,
                                   f"retention.{key}", message) for key, message in short])
    unknown = unknown_policy_names(spec.policy, [s.name for s in spec.services], [p.id for p in patterns],
                                   registry.types("actuator"))
    if unknown:
        raise ConfigError([Problem(source, doc.line_of(["policy", *loc]), _dotted(["policy", *loc]), message)
                           for loc, message in unknown])
    return Config(spec=spec, source=source, base_dir=base_dir, bindings=bindings, patterns=tuple(patterns),
                  warnings=(*_goals_never_sampled(spec.services, source, doc),
                            *_lines_never_sampled(spec.services, source, doc)))


def _goals_never_sampled(services: Sequence[ServiceSpec], source: str, doc: YamlDoc) -> list[Problem]:
    """A goal whose metric no source configured for its service samples (a typo, or a metric only
    a source the service lacks would make) never measures anything: its budget stays empty and no
    burn is ever seen. One warning each, naming what the service's sources do sample where the
    config says (:meth:`ServiceSpec.sampled_metrics`; a scrape keeping every sample under its own
    name could sample anything: no warning)."""
    out = []
    for i, svc in enumerate(services):
        sampled = svc.sampled_metrics()
        if sampled is None:
            continue
        for j, goal in enumerate(svc.goals):
            if goal.metric in sampled:
                continue
            where: list[str | int] = ["services", i, "goals", j, "metric"]
            what = (f"its sources sample {', '.join(sampled)}" if sampled else
                    "it has no source (probes, metrics, or a process, systemd, docker or kubernetes binding)")
            out.append(Problem(source, doc.line_of(where), _dotted(where),
                               f"no source of service {svc.name} samples {goal.metric!r}, so goal {goal.name} "
                               f"would never measure anything; {what}"))
    return out


def _lines_never_sampled(services: Sequence[ServiceSpec], source: str, doc: YamlDoc) -> list[Problem]:
    """A line (``thresholds.extra``, ``thresholds.minimums``), a forecast (``trends``,
    ``seasonal_trends``) or an anomaly watch of a metric no source configured for its service
    samples (a typo, or a metric only a source the service lacks would make) is never crossed,
    forecast or seen: one warning each, as
    for a goal (:func:`_goals_never_sampled`; none for a scrape keeping every sample under its
    own name, nor for the built-in lines every service has whatever it samples)."""
    out = []
    for i, svc in enumerate(services):
        sampled = svc.sampled_metrics()
        if sampled is None:
            continue
        what = (f"its sources sample {', '.join(sampled)}" if sampled else
                "it has no source (probes, metrics, or a process, systemd, docker or kubernetes binding)")
        watched: list[tuple[list[str | int], str, str]] = [
            (["thresholds", "extra", name], name, "its threshold would never be crossed")
            for name in svc.thresholds.extra]
        watched += [(["thresholds", "minimums", name], name, "its floor would never be crossed")
                    for name in svc.thresholds.minimums]
        watched += [(["trends", j, "metric"], t.metric, "its trend would never be forecast")
                    for j, t in enumerate(svc.trends or [])]
        watched += [(["seasonal_trends", j, "metric"], t.metric, "its seasonal trend would never be forecast")
                    for j, t in enumerate(svc.seasonal_trends)]
        watched += [(["anomalies", j, "metric"], a.metric, "its anomalies would never be seen")
                    for j, a in enumerate(svc.anomalies)]
        for loc, metric, never in watched:
            if metric in sampled:
                continue
            where: list[str | int] = ["services", i, *loc]
            out.append(Problem(source, doc.line_of(where), _dotted(where),
                               f"no source of service {svc.name} samples {metric!r}, so {never}; {what}"))
    return out


def _verify_lines_missing(patterns: Sequence[Pattern], services: Sequence[ServiceSpec],
                          bindings: Mapping[str, Mapping[str, BaseModel]]) -> list[Problem]:
    """A pattern verified against the service's own threshold of a metric no built-in threshold
    covers (``max: threshold`` of ``queue_depth``; ``min: threshold``, a floor) needs that line, in
    ``thresholds.extra`` (``thresholds.minimums``), on every service that can carry the pattern
    out: one problem per such pattern, at its file and line, naming the services without it."""
    problems = []
    for p in patterns:
        if p.verify is None or p.verify.threshold is None or maximum_kind(p.verify.metric) != "extra":
            continue
        floor = p.verify.threshold == "min"
        lacking = [s.name for s in services
                   if (s.thresholds.floors() if floor else s.thresholds.maximums()).get(p.verify.metric) is None
                   and p.id not in cannot_run([p], bindings.get(s.name, {}), s.name)]
        if lacking:
            file, _, line = p.source.rpartition(":")
            problems.append(Problem(file or p.source, int(line) if line.isdigit() else None,
                                    f"verify.{p.verify.threshold}",
                                    f"threshold: pattern {p.id} is verified against the service's own "
                                    f"{'floor' if floor else 'threshold'} for {p.verify.metric!r}, which "
                                    f"{', '.join(lacking)} {'does' if len(lacking) == 1 else 'do'} not set: add it "
                                    f"under thresholds.{'minimums' if floor else 'extra'}, or give the pattern a "
                                    "number"))
    return problems


def read_windows(spec: AutonomicSpec, patterns: Iterable[Pattern]) -> dict[str, list[tuple[float, str]]]:
    """Per ``retention`` field, how far back the engine itself still reads that kind of history,
    as (seconds, what reads it): retention must keep at least the longest of them."""
    engine, policy = spec.engine, spec.policy
    week = 7 * DAY_S
    incidents = [
        (week, "the weekly rate limits (policy.rate_limits.per_week, per_service_week) count a week of actions"),
        (week, "the weekly report reads a week of incidents and actions"),
        (policy.breaker.open_s, "a breaker stays open policy.breaker.open_s"),
        (policy.backoff.reset_after_s, "backoff looks back policy.backoff.reset_after_s"),
        (engine.approval_ttl_s, "an approval request waits engine.approval_ttl_s"),
        (engine.decision_ttl_s, "a decision is acted on within engine.decision_ttl_s"),
    ]
    incidents += [(p.match.after_actions.within_s, f"pattern {p.id} counts actions of the last "
                   f"{counted(p.match.after_actions.within_s / DAY_S, 'day')} (match.after_actions.within_s)")
                  for p in patterns if p.match.after_actions is not None]
    return {
        "incidents_days": incidents,
        "audit_days": [(week, "the weekly report reads a week of the audit log (its notable events)")],
        "findings_days": [(DAY_S, "a floor of a day (a person looks back at yesterday's findings; the engine itself "
                                  "reads only an open incident's findings, which are never pruned)"),
                          (engine.alert_quiet_s, "an incident whose alert fires waits engine.alert_resolve_after_s")],
    }


def retention_too_short(spec: AutonomicSpec, patterns: Iterable[Pattern]) -> list[tuple[str, str]]:
    """Each ``retention`` field set shorter than what the engine still reads (:func:`read_windows`),
    as (field, message): pruning would change what the engine decides. Null or 0 (for ever) is
    never too short."""
    found = []
    for key, windows in read_windows(spec, patterns).items():
        days = getattr(spec.retention, key)
        if not days:
            continue
        need_s, why = max(windows, key=lambda w: w[0])
        if days * DAY_S < need_s:
            found.append((key, f"{counted(float(days), 'day')} is shorter than the {counted(need_s / DAY_S, 'day')} "
                               f"the engine still reads: {why}; keep at least that (or null to keep for ever)"))
    return found


def policy_retention_too_short(config: Config, policy: PolicyConfig) -> list[tuple[str, str]]:
    """:func:`retention_too_short` of ``config`` with ``policy`` in force instead of the file's:
    what a runtime change of the policy (``PUT /api/v1/policy``) is checked against, as loading
    the file checks the file's policy, so a window the change lengthens past retention is refused
    with the same field and message."""
    return retention_too_short(config.spec.model_copy(update={"policy": policy}), config.patterns)


def unknown_policy_names(policy: PolicyConfig, services: Iterable[str], pattern_ids: Iterable[str],
                         action_types: Iterable[str]) -> list[tuple[list[str | int], str]]:
    """Keys of ``policy.services``, ``policy.patterns`` and ``policy.actions`` that name no
    service (``host`` is one), pattern or actuator type, each as (its place under policy, the
    message, naming the known name nearest to it, or all of them when none is near): a misspelt
    name would leave its override (autonomy observe for one service, say) silently unapplied.
    Used for the config file and for ``PUT /api/v1/policy``."""
    known = {
        "services": ("service", {*services, "host"}),
        "patterns": ("pattern", set(pattern_ids)),
        "actions": ("action type", set(action_types)),
    }
    unknown: list[tuple[list[str | int], str]] = []
    for section, (what, names) in known.items():
        for key in getattr(policy, section):
            if key not in names:
                hint = did_you_mean(key, names) or f" (known: {', '.join(sorted(names)) or 'none'})"
                unknown.append(([section, key], f"no {what} named {key!r}{hint}"))
    return unknown


def _bindings(actuators: Mapping[str, Any], i: int, base_dir: Path, source: str, doc: YamlDoc,
              registry: Registry, problems: list[Problem]) -> dict[str, BaseModel]:
    """``services[i].actuators`` validated, by actuator type; each problem (an unknown type, a
    binding outside its actuator's schema) appended to ``problems``. Paths in a binding are read
    relative to the config file's folder, and a ``cwd`` not given is that folder: a command's
    relative paths mean what they mean there, not in whichever folder ``autonomic run`` was
    started from."""
    out: dict[str, BaseModel] = {}
    for type_name, raw in actuators.items():
        loc: list[str | int] = ["services", i, "actuators", str(type_name)]
        try:
            actuator = registry.actuator(str(type_name))
        except ConfigError as err:
            problems.append(Problem(source, doc.line_of(loc), _dotted(loc), err.problems[0].message))
            continue
        if raw is not None and not isinstance(raw, dict):
            problems.append(Problem(source, doc.line_of(loc), _dotted(loc),
                                    "must be a mapping of the binding's fields"))
            continue
        resolved = {
            k: (str(_resolve(base_dir, v)) if k in _PATH_KEYS and isinstance(v, str) else v)
            for k, v in (raw or {}).items()
        }
        if "cwd" in actuator.Binding.model_fields and resolved.get("cwd") is None:
            resolved["cwd"] = str(base_dir)
        try:
            out[str(type_name)] = actuator.Binding.model_validate(resolved)
        except ValidationError as err:
            problems.extend(problems_from(err, doc, prefix=loc, model=actuator.Binding))
    return out


def _raw_bindings(data: dict[str, Any], base_dir: Path, source: str, doc: YamlDoc,
                  registry: Registry) -> list[Problem]:
    """The problems of every ``services[].actuators`` binding, read from the raw data (used when
    the schema failed, so one run lists those too)."""
    services = data.get("services")
    problems: list[Problem] = []
    for i, svc in enumerate(services if isinstance(services, list) else []):
        actuators = svc.get("actuators") if isinstance(svc, dict) else None
        if isinstance(actuators, dict):
            _bindings(actuators, i, base_dir, source, doc, registry, problems)
    return problems


def _dotted(loc: list[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
