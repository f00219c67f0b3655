"""The HTTP health probe: is the service answering, and how fast."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from autonomic.deadline import Client, within
from autonomic.model import Sample
from autonomic.redact import scrub, shown_url


def check_http_url(url: str) -> str:
    """``url`` unchanged when it is an absolute http(s) URL with a host; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"must be an http:// or https:// URL, got {shown_url(url)!r}")
    if not parts.hostname:
        raise ValueError(f"has no host: {shown_url(url)!r}")
    return url


def origin(url: str) -> str:
    """The server ``url`` is on (``http://host:port``, the port spelled out, no credentials): a
    source's collection lane. Sources of one server are collected one after another, the
    servers' lanes at once (see ``engine.collect_workers``)."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # not a port number: its own lane, as written
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


MAX_BODY_BYTES = 64 * 1024 * 1024  # of a scrape's or a query's answer, unless its source says otherwise


class TooLarge(httpx.HTTPError):
    """An answer longer than its reader's limit, given up once that much was read."""


def get_within(client: httpx.Client, url: str, timeout_s: float,
               params: Mapping[str, str | float] | None = None, *,
               max_bytes: int = MAX_BODY_BYTES) -> httpx.Response:
    """GET ``url``, the whole answer (its body read) within about ``timeout_s``: httpx's timeout
    bounds each phase and each read on its own, so a server trickling its body could otherwise
    hold the caller many times the timeout. The body is read until the deadline; past it,
    ``httpx.ReadTimeout`` (an ``httpx.TimeoutException``, as a timeout of one read is). At most
    one read more than the deadline. Through a :class:`~autonomic.deadline.Client` (every source's
    own, and the engine's shared one) the whole exchange, headers trickled a byte at a time
    included, is bounded by ``timeout_s`` as well (see :mod:`autonomic.deadline`). A body (decoded) of more
    than ``max_bytes``: :class:`TooLarge`, once that much was read (a /metrics page whose labels
    exploded, a family query over a whole fleet, would otherwise be held whole in memory)."""
    deadline = time.monotonic() + timeout_s
    with within(timeout_s), client.stream("GET", url, params=params, timeout=timeout_s) as response:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge(f"the answer is longer than {max_bytes:,} bytes (max_body_bytes): not read further")
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout(f"the answer was not complete within {timeout_s:g} s",
                                        request=response.request)
        body = b"".join(chunks)
    headers = response.headers.copy()  # the body is decoded already (gzip): not to be again
    for name in ("content-encoding", "content-length"):
        headers.pop(name, None)
    return httpx.Response(response.status_code, headers=headers, content=body, request=response.request)


class HttpProbeSpec(BaseModel):
    """``services[].probes[]`` entry of type ``http``: GET ``url`` and expect ``expect_status``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["http"] = "http"
    url: str
    timeout_s: float = Field(default=2.0, gt=0, le=60)
    expect_status: int = Field(default=200, ge=100, le=599)

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, v: str) -> str:
        return check_http_url(v)


_FAILURE_CHARS = 200  # of an HTTP client's error in a failure reason


class HttpProbe:
    """Source ``probe:<service>``: yields ``probe_ok`` (1 when the GET answered with the
    expected status within the timeout, else 0) and ``probe_latency_ms`` (the attempt's
    round trip, also for failures). Connection refused, timeouts and wrong statuses are
    readings, never exceptions. Redirects are not followed: a 30x is a wrong status unless
    it is the expected one.

    ``timeout_s`` bounds the whole answer, headers and body: httpx's timeout bounds each read,
    so a server trickling them could otherwise pass after many times the timeout (and hold up
    the collection that long). Through a :class:`~autonomic.deadline.Client` (its own, and the
    engine's shared one) the exchange has one deadline; the body is also read only until then.

    ``failure`` says why the last collection read 0 (None when it read 1): the status it got, the
    timeout it ran out of, or the HTTP client's error (the URL's credentials hidden). The engine
    puts it in a ``probe_ok`` finding's evidence: "down" alone does not tell a person whether
    the port is closed or the service answers 503.
    """

    def __init__(self, service: str, spec: HttpProbeSpec, client: httpx.Client | None = None) -> None:
        self.service = service
        self.spec = spec
        self.name = f"probe:{service}"
        self.lane = origin(spec.url)
        self.failure: str | None = None
        self._owns_client = client is None
        self._client = client if client is not None else Client()

    def collect(self, now: float) -> Sequence[Sample]:
        timeout = self.spec.timeout_s
        started = time.perf_counter()
        failure: str | None = None
        try:
            with within(timeout), self._client.stream("GET", self.spec.url, timeout=timeout) as response:
                if response.status_code != self.spec.expect_status:
                    failure = f"answered {response.status_code}, expected {self.spec.expect_status}"
                for _ in response.iter_bytes():
                    if time.perf_counter() - started > timeout:
                        break
        except httpx.TimeoutException as exc:
            failure = f"no answer within {timeout:g} s ({type(exc).__name__})"
        except httpx.HTTPError as exc:
            failure = f"{type(exc).__name__}: {scrub(str(exc), self.spec.url)}"[:_FAILURE_CHARS]
        elapsed = time.perf_counter() - started
        if failure is None and elapsed > timeout:
            failure = f"the answer took {elapsed:.1f} s, more than {timeout:g} s"
        ok = failure is None
        self.failure = failure and f"GET {shown_url(self.spec.url)}: {failure}"
        latency_ms = elapsed * 1000.0
        return [
            Sample(self.service, "probe_ok", now, 1.0 if ok else 0.0),
            Sample(self.service, "probe_latency_ms", now, latency_ms),
        ]

    def close(self) -> None:
        """Close the HTTP client if this probe created it."""
        if self._owns_client:
            self._client.close()


class ProbeGroup:
    """Source ``probe:<service>`` for a service with several probes: one ``probe_ok`` per
    collection (1 only when every probe passed) and one ``probe_latency_ms`` (the slowest).

    One sample per collection keeps ``down_after`` and ``sustain`` counting collections: with a
    sample per probe, two probes failing once would be two failed samples in a row (down at
    the first failure), and one probe failing for good would alternate with the other's
    successes (never down, only an availability breach). ``failure``: the failing probes'
    reasons, joined (None when every probe passed).
    """

    def __init__(self, service: str, probes: Sequence[HttpProbe]) -> None:
        if not probes:
            raise ValueError("a probe group needs at least one probe")
        self.service = service
        self.name = f"probe:{service}"
        self.probes = list(probes)
        self.lane = self.probes[0].lane  # its probes run one after another: one lane

    @property
    def failure(self) -> str | None:
        reasons = [p.failure for p in self.probes if p.failure]
        return "; ".join(reasons) or None

    def collect(self, now: float) -> Sequence[Sample]:
        ok, latency = 1.0, 0.0
        for probe in self.probes:
            for sample in probe.collect(now):
                if sample.metric == "probe_ok":
                    ok = min(ok, sample.value)
                elif sample.metric == "probe_latency_ms":
                    latency = max(latency, sample.value)
        return [Sample(self.service, "probe_ok", now, ok), Sample(self.service, "probe_latency_ms", now, latency)]

    def close(self) -> None:
        """Close the probes' HTTP clients that they created."""
        for probe in self.probes:
            probe.close()
