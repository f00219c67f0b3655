"""The ``http`` actuator: one HTTP request to the service's admin API, with an Idempotency-Key."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autonomic.deadline import Client, within
from autonomic.errors import RetryableActuatorError, TerminalActuatorError
from autonomic.protocols import ActuatorContext, Target
from autonomic.redact import Secrets, is_credential_header, scrub, shown_url

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
# the server (or a proxy before it) cannot answer now: as a refused connection is, retried with the
# same Idempotency-Key (a proxy answers 502 where the service itself would refuse the connection)
TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
BODY_KEEP = 65536  # bytes of a response's body read (a credential it quotes is hidden before the cut to 200)
BODY_WITHIN = 3  # the body is read until this many timeout_s after the request started, at the latest


def _upper(v: Any) -> Any:
    return v.upper() if isinstance(v, str) else v


def _check_path(v: str) -> str:
    if not v.startswith("/"):
        raise ValueError(f"path {v!r} must start with '/'")
    return v


class HttpUndo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True)

    method: Method = "POST"
    path: str
    body: dict[str, Any] | None = Field(default=None, alias="json")  # written `json:` in YAML

    _method = field_validator("method", mode="before")(_upper)
    _path = field_validator("path")(_check_path)


class HttpParams(BaseModel):
    """``json`` is the request body (the attribute is ``body``: ``json`` would shadow pydantic)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True)

    method: Method = "POST"
    path: str
    body: dict[str, Any] | None = Field(default=None, alias="json")  # written `json:` in YAML
    expect_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    timeout_s: float = Field(default=5.0, gt=0, le=300)
    undo: HttpUndo | None = None

    _method = field_validator("method", mode="before")(_upper)
    _path = field_validator("path")(_check_path)


class HttpBinding(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str
    headers: dict[str, str] = Field(default_factory=dict, repr=False)  # never logged or returned
    # header -> the environment variable holding its value: a credential kept out of the file
    headers_env: dict[str, str] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL with a host, got {shown_url(v)!r}")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _one_source_per_header(self) -> HttpBinding:
        both = sorted({h.lower() for h in self.headers} & {h.lower() for h in self.headers_env})
        if both:
            raise ValueError(f"headers and headers_env both set {', '.join(both)}; give each header once")
        return self

    def all_headers(self) -> dict[str, str]:
        """``headers`` and each ``headers_env`` header read from its variable now. An unset
        variable is a TerminalActuatorError naming it (retrying will not set it)."""
        found = dict(self.headers)
        for header, var in self.headers_env.items():
            value = os.environ.get(var)
            if not value:
                raise TerminalActuatorError(f"http: environment variable {var} (headers_env.{header}) is not set")
            found[header] = value
        return found


class HttpActuator:
    """Sends ``method path`` (with an optional JSON body) to the binding's ``base_url`` and the
    header ``Idempotency-Key: <key>`` (``<key>:undo`` for the undo request). A status outside
    ``expect_status`` is terminal, but for 429, 502, 503 and 504 (the server, or a proxy before
    it, cannot answer now): retryable, as a connection error or a timeout is. Of the answer's
    body the first ``BODY_KEEP`` bytes are read, for ``BODY_WITHIN`` × ``timeout_s`` at most. The
    binding's headers (``headers``, and ``headers_env``: a header's value read from an environment variable
    at each call, for credentials) are sent; credentials among them (``headers_env``, and
    Authorization, X-Api-Key, Cookie and the like) never appear in results or errors: a header value, and the
    credential after its scheme (``Bearer <token>``), 8 characters or more, is shown as ``***``
    wherever the response body or an error quotes it, as is a credential in ``base_url``."""

    type: ClassVar[str] = "http"
    Params = HttpParams
    Binding = HttpBinding

    def __init__(self, ctx: ActuatorContext) -> None:
        self.ctx = ctx

    @staticmethod
    def _params(params: BaseModel) -> HttpParams:
        return params if isinstance(params, HttpParams) else HttpParams.model_validate(params)

    @staticmethod
    def _binding(target: Target) -> HttpBinding:
        b = target.binding
        if isinstance(b, HttpBinding):
            return b
        raise TerminalActuatorError(f"service {target.service!r} has no http binding")

    def describe(self, target: Target, params: BaseModel) -> str:
        p = self._params(params)
        body = " with a JSON body" if p.body is not None else ""
        return f"{p.method} {p.path}{body} on {target.service}, expecting {p.expect_status}"

    def call_limit_s(self, target: Target, params: BaseModel) -> float:
        """The longest one call can take: httpx's ``timeout_s`` bounds each phase (connect, write,
        read, the pool) on its own, and each read of the response; its body is read until
        ``BODY_WITHIN`` × ``timeout_s`` after the start, then one read more at most: four of them."""
        return 4 * self._params(params).timeout_s

    def snapshot(self, target: Target, params: BaseModel) -> dict[str, Any]:
        return {}

    def applied(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> bool | None:
        return None

    def apply(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> dict[str, Any]:
        p = self._params(params)
        return self._send(target, p.method, p.path, p.body, key, p)

    def undo(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> dict[str, Any]:
        p = self._params(params)
        if p.undo is None:
            return {"undo": "not applicable"}
        return self._send(target, p.undo.method, p.undo.path, p.undo.body, f"{key}:undo", p)

    def _send(
        self, target: Target, method: str, path: str, body: dict[str, Any] | None, key: str, p: HttpParams
    ) -> dict[str, Any]:
        b = self._binding(target)
        where = f"{method} {path} on {target.service}"
        credentials = b.all_headers()
        headers = {**credentials, "Idempotency-Key": key}
        deadline = time.monotonic() + BODY_WITHIN * p.timeout_s
        try:
            with Client(base_url=b.base_url, timeout=p.timeout_s) as client, within(BODY_WITHIN * p.timeout_s), \
                    client.stream(method, path, json=body, headers=headers) as resp:
                status, raw = resp.status_code, _read_body(resp, deadline)
                encoding = resp.encoding or "utf-8"
                location = resp.headers.get("location") if resp.is_redirect else None
        except httpx.TimeoutException as exc:
            raise RetryableActuatorError(f"{where}: timed out after {p.timeout_s:g} s") from exc
        except httpx.TransportError as exc:
            raise RetryableActuatorError(f"{where}: {type(exc).__name__}: {_hide(str(exc), b, credentials)}") from exc
        try:
            decoded = raw.decode(encoding, errors="replace")
        except LookupError:  # a charset Python does not know
            decoded = raw.decode("utf-8", errors="replace")
        # hidden before cutting, so a credential across the cut is not half shown
        text = _hide(decoded, b, credentials)[:200]
        if status not in p.expect_status:
            error = RetryableActuatorError if status in TRANSIENT_STATUS else TerminalActuatorError
            # a redirect is not followed (the binding's credentials would go where it points): where
            # it pointed is the clue (http to https, a login page), its body is mostly empty
            moved = f" (redirect to {_hide(shown_url(location), b, credentials)}, not followed)" if location else ""
            raise error(f"{where}: status {status}{moved} (expected {p.expect_status}): {text}")
        return {"method": method, "path": path, "status": status, "body": text}


def _read_body(resp: httpx.Response, deadline: float) -> bytes:
    """The first ``BODY_KEEP`` bytes of ``resp``'s body, read until ``deadline`` at the latest:
    only its first 200 characters are kept, and httpx's ``timeout_s`` bounds each read, not the
    body, so a body of gigabytes, or one sent a byte at a time, would hold the call (and its
    memory) for as long as the server likes. The exchange's own deadline (:func:`~autonomic.deadline.within`,
    the same) cutting a read short ends the body as reaching ``deadline`` does."""
    data = bytearray()
    try:
        for chunk in resp.iter_bytes():
            data += chunk[: BODY_KEEP - len(data)]
            if len(data) >= BODY_KEEP or time.monotonic() >= deadline:
                break
    except httpx.TimeoutException:
        if time.monotonic() < deadline:  # one read longer than timeout_s: the call timed out
            raise
    return bytes(data)


def _hide(text: str, b: HttpBinding, headers: dict[str, str]) -> str:
    """``text`` with the binding's credentials as ``***``: each credential header's value
    (:func:`~autonomic.redact.is_credential_header`, or from ``headers_env``) and the part of it
    after a scheme (``Bearer <token>``), when at least MIN_SCRUB long, and those of ``base_url``."""
    credentials = [v for k, v in headers.items() if is_credential_header(k) or k in b.headers_env]
    hidden = Secrets(part for value in credentials for part in (value, value.rpartition(" ")[2]))
    return scrub(hidden.text(text), b.base_url)
