"""Scrape a service's own Prometheus text endpoint into samples."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict, Field, field_validator

from autonomic.deadline import Client
from autonomic.errors import SourceError
from autonomic.model import Sample
from autonomic.monitor.probe import MAX_BODY_BYTES, TooLarge, check_http_url, get_within, origin
from autonomic.redact import scrub

_SNIPPET = 200  # at most this many characters of a bad payload go into an error message
_MAX_KEYS = 3  # rename keys named in one message
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"')  # a label name and its quoted value, in a key


class PrometheusSpec(BaseModel):
    """``services[].metrics[]`` entry of type ``prometheus``.

    ``rename`` maps an exposed sample key to our metric name (``demo_error_rate`` ->
    ``error_rate``). A labelled sample's key is ``name{k="v",...}`` with labels sorted by
    name. When ``rename`` is non-empty only the keys it names are kept; when it is empty every
    unlabelled sample is kept under its own name (labelled ones are dropped). Each metric may be
    named once: two keys onto one metric would interleave two series into one.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["prometheus"] = "prometheus"
    url: str
    timeout_s: float = Field(default=2.0, gt=0, le=60)
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, gt=0, le=1024**3)
    rename: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, v: str) -> str:
        return check_http_url(v)

    @field_validator("rename")
    @classmethod
    def _one_key_per_metric(cls, v: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for key, metric in v.items():
            if metric in seen:
                raise ValueError(f"{seen[metric]!r} and {key!r} are both renamed to {metric!r}; "
                                 "a metric takes one series")
            seen[metric] = key
        return v


def sample_key(name: str, labels: dict[str, str]) -> str:
    """``name`` alone, or ``name{k="v",...}`` with the labels sorted by name."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{labels[k]}"' for k in sorted(labels))
    return f"{name}{{{inner}}}"


def _relabelled(key: str, shapes: dict[str, set[tuple[str, ...]]]) -> bool:
    """Whether the sample ``key`` names is missing because its name now comes with other label
    names (a label added or dropped): the answer has samples of the name, none with the key's
    label names. A labelled child not made yet (``code="500"`` before the first error) has its
    siblings' label names, and a name with no sample at all may simply have none yet: neither is."""
    name, _, inner = key.partition("{")
    have = shapes.get(name)
    if not have:
        return False
    return tuple(sorted(_LABEL.findall(inner))) not in have


def _snippet(text: str) -> str:
    return repr(text[:_SNIPPET])


class PrometheusScrape:
    """Source ``prometheus:<service>``: GET the endpoint and keep the samples ``spec`` selects.

    Raises ``SourceError`` naming the URL (credentials in it shown as ``***``) for a
    connection failure, no complete answer within ``timeout_s`` (body included: a server trickling
    its metrics does not hold the loop; see :func:`~autonomic.monitor.probe.get_within`), an
    answer longer than ``max_body_bytes`` (64 MiB), a non-200 answer, or a body that is not Prometheus text
    (quoting at most 200 characters of the offending payload).
    Non-finite values (NaN, +-Inf) are dropped. A series the payload repeats gives one sample,
    its first (as Prometheus keeps), so ``sustain`` and ``down_after`` count scrapes. A ``rename``
    key whose name the answer has only with other label names (a deploy added or dropped a label)
    is a ``SourceError`` naming it, carrying the other samples: its metric would otherwise go
    stale without a word, and a threshold on it never fire. A key with no sample at all is not:
    labelled children are made at their first use (``code="500"`` at the first error).
    """

    def __init__(self, service: str, spec: PrometheusSpec, client: httpx.Client | None = None) -> None:
        self.service = service
        self.spec = spec
        self.name = f"prometheus:{service}"
        self.lane = origin(spec.url)
        self._owns_client = client is None
        self._client = client if client is not None else Client()

    def collect(self, now: float) -> Sequence[Sample]:
        try:
            return self._collect(now)
        except SourceError as exc:
            raise SourceError(scrub(str(exc), self.spec.url), exc.samples) from None

    def _collect(self, now: float) -> Sequence[Sample]:
        url = self.spec.url
        try:
            response = get_within(self._client, url, self.spec.timeout_s, max_bytes=self.spec.max_body_bytes)
        except TooLarge as exc:
            raise SourceError(f"{url}: {exc}") from None
        except httpx.TimeoutException:
            raise SourceError(f"{url}: no complete answer within {self.spec.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise SourceError(f"{url}: request failed: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise SourceError(f"{url}: HTTP {response.status_code}: {_snippet(response.text)}")
        text = response.text
        try:
            families = list(text_string_to_metric_families(text))
        except Exception as exc:  # the parser raises ValueError, and others on odd input
            # the parser's message quotes the offending line; without one, quote the start
            detail = str(exc)[:_SNIPPET] or _snippet(text)
            raise SourceError(f"{url}: not Prometheus text ({type(exc).__name__}: {detail})") from None
        rename = self.spec.rename
        samples: list[Sample] = []
        taken: set[str] = set()
        shapes: dict[str, set[tuple[str, ...]]] = {}  # name -> the label names its samples have
        for family in families:
            for s in family.samples:
                shapes.setdefault(s.name, set()).add(tuple(sorted(s.labels)))
                value = float(s.value)
                if not math.isfinite(value):
                    continue
                key = sample_key(s.name, s.labels)
                if rename:
                    metric = rename.get(key)
                    if metric is None:
                        continue
                elif s.labels:
                    continue
                else:
                    metric = key
                if metric in taken:
                    continue
                taken.add(metric)
                samples.append(Sample(self.service, metric, now, value))
        relabelled = [key for key, metric in rename.items() if metric not in taken and _relabelled(key, shapes)]
        if relabelled:
            lacking = ", ".join(f"{key} ({rename[key]})" for key in relabelled[:_MAX_KEYS])
            more = f" and {len(relabelled) - _MAX_KEYS} more" if len(relabelled) > _MAX_KEYS else ""
            raise SourceError(f"{url}: no sample for rename's {lacking}{more}: the answer has that name only with "
                              "other label names (relabelled?); its other samples are kept", samples)
        return samples

    def close(self) -> None:
        """Close the HTTP client if this scrape created it."""
        if self._owns_client:
            self._client.close()
