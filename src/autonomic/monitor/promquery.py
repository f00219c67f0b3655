"""Read a metric from a Prometheus server through its HTTP query API (PromQL given in config).

The response is parsed strictly (see :func:`parse_query_response`): ``status`` must be
``success`` and ``data.resultType`` one of ``vector``, ``matrix`` or ``scalar``, each value a
``[timestamp, "string"]`` pair. Rules for what comes back:

- non-finite values (``NaN``, ``+Inf``, ``-Inf``) are dropped, point by point;
- ``label`` set: only series whose label of that name equals the service name are kept;
- several series left: their values are summed per timestamp (one sample per timestamp); a sum
  that overflows the float range is dropped as a non-finite value is;
- an empty result (nothing matches yet) is no samples, not an error;
- a ``string`` result (``query: '"text"'``) is an error naming the query;
- ``mode: instant`` and a ``matrix`` (a range selector such as ``up[5m]`` with no function over
  it) is an error naming the query: each poll would store the range's past points again.

Everything else (an ``error`` answer, HTTP 4xx/5xx, no complete answer within ``timeout_s``,
body included, a refused connection, a body that is not the query API's JSON) raises
:class:`~autonomic.errors.SourceError` naming the URL and the reason, quoting at most 200
characters of a bad payload.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from autonomic.deadline import Client
from autonomic.errors import SourceError
from autonomic.model import Sample
from autonomic.monitor.probe import MAX_BODY_BYTES, TooLarge, check_http_url, get_within, origin
from autonomic.monitor.unanswered import Unanswered
from autonomic.redact import scrub

_SNIPPET = 200  # at most this many characters of a bad payload go into an error message
_MAX_POINTS = 11_000  # Prometheus refuses range queries with more points per series


class PromQuerySpec(BaseModel):
    """``services[].metrics[]`` entry of type ``promql``: evaluate ``query`` on the Prometheus at
    ``url`` and record the result as ``metric`` of the service.

    ``mode: instant`` evaluates the query at the poll time (one sample); ``mode: range`` asks for
    the last ``range_s`` seconds at ``step_s`` resolution and keeps only points newer than the
    ones already returned. ``label`` names a label whose value must equal the service name
    (e.g. ``job``); without it every series of the result counts, summed per timestamp.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["promql"] = "promql"
    url: str
    query: str = Field(min_length=1)
    metric: str = Field(min_length=1)
    mode: Literal["instant", "range"] = "instant"
    range_s: float = Field(default=300.0, gt=0)
    step_s: float = Field(default=15.0, gt=0)
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    # of an answer (a query shared by services: its first source's)
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, gt=0, le=1024**3)
    label: str | None = Field(default=None, min_length=1)

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, v: str) -> str:
        return check_http_url(v).rstrip("/")

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v

    @model_validator(mode="after")
    def _points_within_limit(self) -> PromQuerySpec:
        if self.mode == "range" and self.range_s / self.step_s > _MAX_POINTS:
            raise ValueError(f"range_s / step_s must be at most {_MAX_POINTS} (Prometheus' limit per series)")
        return self


# --- the query API's JSON ------------------------------------------------------------------


class _Lenient(BaseModel):
    # the API may grow fields (warnings, infos, native histograms); unknown keys are ignored
    model_config = ConfigDict(extra="ignore")


_Point = tuple[float, str]


class _VectorItem(_Lenient):
    metric: dict[str, str] = Field(default_factory=dict)
    value: _Point


class _MatrixItem(_Lenient):
    metric: dict[str, str] = Field(default_factory=dict)
    values: list[_Point]


class _Data(_Lenient):
    resultType: Literal["vector", "matrix", "scalar"]
    result: Any


class _Envelope(_Lenient):
    status: Literal["success", "error"]
    data: _Data | None = None
    errorType: str = ""
    error: str = ""


_VECTOR = TypeAdapter(list[_VectorItem])
_MATRIX = TypeAdapter(list[_MatrixItem])
_SCALAR = TypeAdapter(_Point)

Series = tuple[dict[str, str], list[tuple[float, float]]]


class PromQueryError(ValueError):
    """The server answered ``status: error``; ``error_type`` and ``error`` are its words."""

    def __init__(self, error_type: str, error: str) -> None:
        self.error_type = error_type
        self.error = error
        super().__init__(f"{error_type or 'error'}: {error[:_SNIPPET]}")


def _field_error(err: ValidationError, prefix: str = "") -> str:
    first = err.errors()[0]
    loc = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
    return f"{loc.lstrip('.') or '(top)'}: {first['msg']}"


def _finite(points: Sequence[_Point], where: str, indexed: bool = True) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for i, (ts, text) in enumerate(points):
        try:
            value = float(text)
        except ValueError:
            at = f"{where}[{i}]" if indexed else where
            raise ValueError(f"{at}: value {text[:_SNIPPET]!r} is not a number") from None
        if math.isfinite(value):
            out.append((ts, value))
    return out


def parse_query_response(payload: Any) -> list[Series]:
    """The series of a decoded query API answer, as ``(labels, [(ts, value), ...])``.

    A ``scalar`` result is one series without labels; non-finite values are dropped. Raises
    :class:`PromQueryError` for ``status: error`` and ``ValueError`` naming the field for
    anything that is not the documented shape.
    """
    try:
        envelope = _Envelope.model_validate(payload)
    except ValidationError as err:
        raise ValueError(_field_error(err)) from None
    if envelope.status == "error":
        raise PromQueryError(envelope.errorType, envelope.error)
    data = envelope.data
    if data is None:
        raise ValueError("data: missing in a success answer")
    try:
        if data.resultType == "scalar":
            return [({}, _finite([_SCALAR.validate_python(data.result)], "data.result", False))]
        if data.resultType == "vector":
            vector = _VECTOR.validate_python(data.result)
            return [(s.metric, _finite([s.value], f"data.result[{i}].value", False)) for i, s in enumerate(vector)]
        matrix = _MATRIX.validate_python(data.result)
        return [(s.metric, _finite(s.values, f"data.result[{i}].values")) for i, s in enumerate(matrix)]
    except ValidationError as err:
        raise ValueError(_field_error(err, "data.result")) from None


def combine(series: Sequence[Series], label: str | None, service: str) -> list[tuple[float, float]]:
    """One (ts, value) list: the series selected by ``label`` (all when None), summed per
    timestamp, oldest first. A sum past the float range (huge magnitudes, 1e308 + 1e308) is
    dropped as a non-finite value is: it is no number."""
    totals: dict[float, float] = {}
    for labels, points in series:
        if label is not None and labels.get(label) != service:
            continue
        for ts, value in points:
            totals[ts] = totals.get(ts, 0.0) + value
    return sorted((ts, total) for ts, total in totals.items() if math.isfinite(total))


# --- the source ----------------------------------------------------------------------------


class PromQuerySource:
    """Source ``promql:<service>:<metric>``: one PromQL query, its result as ``metric`` samples.

    Instant mode yields at most one sample per poll, stamped with the evaluation time Prometheus
    reports. Range mode yields the points of ``[now - range_s, now]`` at ``step_s`` that are
    newer than the last one it returned (later polls continue on the same step grid).
    """

    def __init__(self, service: str, spec: PromQuerySpec, client: httpx.Client | None = None,
                 unanswered: Unanswered | None = None) -> None:
        self.service = service
        self.spec = spec
        self.name = f"promql:{service}:{spec.metric}"
        self.lane = origin(spec.url)  # one Prometheus's queries one after another: see Unanswered
        self._owns_client = client is None
        self._client = client if client is not None else Client()
        self._last_ts: float | None = None
        self._unanswered = unanswered  # shared with the other query sources: see Unanswered

    def collect(self, now: float) -> Sequence[Sample]:
        request = self.request(now)
        if request is None:
            return []
        return self.samples(self.fetch(*request, now=now))

    def request(self, now: float) -> tuple[str, dict[str, str | float]] | None:
        """The URL and parameters of the query to ask at ``now``; None when there is nothing new
        to ask (range mode, polled again before its next step)."""
        spec = self.spec
        if spec.mode == "instant":
            return f"{spec.url}/api/v1/query", {"query": spec.query, "time": now}
        start = now - spec.range_s
        if self._last_ts is not None:
            start = max(start, self._last_ts + spec.step_s)
        if start > now:
            return None
        return f"{spec.url}/api/v1/query_range", {"query": spec.query, "start": start, "end": now,
                                                   "step": spec.step_s}

    def samples(self, series: Sequence[Series]) -> list[Sample]:
        """This source's samples of the answer's ``series`` (see :func:`combine`); range mode
        keeps only points newer than the last it returned, and remembers the newest."""
        spec = self.spec
        points = combine(series, spec.label, self.service)
        if spec.mode == "range" and self._last_ts is not None:
            last = self._last_ts
            points = [(ts, v) for ts, v in points if ts > last]
        if points and spec.mode == "range":
            self._last_ts = points[-1][0]
        return [Sample(self.service, spec.metric, ts, value) for ts, value in points]

    def fetch(self, url: str, params: dict[str, str | float], now: float | None = None) -> list[Series]:
        """The parsed answer to one query (of the collection at ``now``); SourceError naming the
        URL (credentials shown as ``***``) for anything but a success answer of the query API's
        shape, and for a query not asked (see :class:`Unanswered`)."""
        try:
            return self._fetch_raw(url, params, now)
        except SourceError as exc:  # named by its URL, credentials in it shown as ***
            raise SourceError(scrub(scrub(str(exc), url), self.spec.url)) from None

    def _fetch_raw(self, url: str, params: dict[str, str | float], now: float | None) -> list[Series]:
        unanswered, server = self._unanswered, self.spec.url
        refusal = None if unanswered is None or now is None else unanswered.refusal(server, now)
        if refusal is not None:
            raise SourceError(f"{url}: {refusal}")
        try:
            response = get_within(self._client, url, self.spec.timeout_s, params, max_bytes=self.spec.max_body_bytes)
        except TooLarge as exc:  # an answer, all the same: the server is not hung
            if unanswered is not None and now is not None:
                unanswered.record(server, now, answered=True)
            raise SourceError(f"{url}: {exc}") from None
        except httpx.TimeoutException:
            if unanswered is not None and now is not None:
                unanswered.record(server, now, answered=False)
            raise SourceError(f"{url}: no complete answer within {self.spec.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise SourceError(f"{url}: request failed: {type(exc).__name__}: {str(exc)[:_SNIPPET]}") from None
        if unanswered is not None and now is not None:
            unanswered.record(server, now, answered=True)
        text = response.text
        try:
            payload = json.loads(text)
        except ValueError:
            status = "" if response.is_success else f"HTTP {response.status_code}, "
            raise SourceError(f"{url}: {status}not JSON: {text[:_SNIPPET]!r}") from None
        data = payload.get("data") if isinstance(payload, dict) and payload.get("status") == "success" else None
        if isinstance(data, dict) and data.get("resultType") == "string":
            # said without the answer, which carries the evaluation time: the same words every poll, logged once
            raise SourceError(f"{url}: query {self.spec.query[:_SNIPPET]!r} gives a string, not a number")
        try:
            series = parse_query_response(payload)
        except PromQueryError as exc:  # Prometheus answers 400/422/503 with this body
            raise SourceError(f"{url}: HTTP {response.status_code}: query failed: {exc}") from None
        except ValueError as exc:
            status = "" if response.is_success else f"HTTP {response.status_code}, "
            raise SourceError(f"{url}: {status}not a query API answer ({exc}): {text[:_SNIPPET]!r}") from None
        if not response.is_success:
            raise SourceError(f"{url}: HTTP {response.status_code}: {text[:_SNIPPET]!r}")
        if self.spec.mode == "instant" and payload["data"]["resultType"] == "matrix":
            # each poll would store again the same past points (the range's), counted as new ones
            raise SourceError(f"{url}: query {self.spec.query[:_SNIPPET]!r} gives a range vector (the points of "
                              "a past range), which an instant query takes no sample of: put a function over "
                              "the range (rate, avg_over_time, ...) or use mode: range")
        return series

    def close(self) -> None:
        """Close the HTTP client if this source created it."""
        if self._owns_client:
            self._client.close()


def shared_key(spec: PromQuerySpec) -> tuple[str, str, float] | None:
    """What makes instant queries one request: the Prometheus, the query and the timeout
    (None for range mode, whose request depends on what each source returned before)."""
    return (spec.url, spec.query, spec.timeout_s) if spec.mode == "instant" else None


class SharedPromQuery:
    """Source: the instant-mode :class:`PromQuerySource` of several services that ask the same
    query of the same Prometheus (a family query such as ``sum by (job) (...)`` that each service
    reads its own series of with ``label: job``), asked once per collection instead of once per
    service. Each service gets exactly the samples its own source would have got from that answer;
    the answer's series are indexed by label value once, so the work is the series in the answer
    plus the services, not their product. A failed request is one SourceError for them all.
    """

    def __init__(self, sources: Sequence[PromQuerySource]) -> None:
        keys = {shared_key(src.spec) for src in sources}
        if not sources or len(keys) != 1 or None in keys:
            raise ValueError("a shared query needs instant-mode sources asking one query of one Prometheus")
        self.sources = list(sources)
        first = sources[0].spec
        self.name = f"promql:{first.metric}:{len(sources)} services:{first.query}"
        self.lane = sources[0].lane

    def collect(self, now: float) -> Sequence[Sample]:
        first = self.sources[0]
        request = first.request(now)
        if request is None:  # instant mode always asks
            return []
        series = first.fetch(*request, now=now)
        by_label: dict[str, dict[str, list[Series]]] = {}
        samples: list[Sample] = []
        for src in self.sources:
            label = src.spec.label
            if label is None:
                samples += src.samples(series)
                continue
            index = by_label.get(label)
            if index is None:  # label value -> its series, in the answer's order
                index = by_label[label] = {}
                for item in series:
                    value = item[0].get(label)
                    if value is not None:
                        index.setdefault(value, []).append(item)
            samples += src.samples(index.get(src.service, []))
        return samples
