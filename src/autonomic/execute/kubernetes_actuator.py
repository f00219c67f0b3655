"""The ``kubernetes`` actuator: rollout restart, scale, patch a ConfigMap key, delete a pod.

It talks to the API server through the official ``kubernetes`` client (imported lazily; without
it every call raises TerminalActuatorError "install autonomic[kubernetes]") and reads objects as
plain JSON (``_preload_content=False``), so it does not depend on the client's model classes.

Every change carries the action's idempotency key in the annotation ``autonomic.io/action-key``,
written in the same PATCH as the change itself, so ``applied`` is a single read and a repeated
``apply`` with one key sends no second mutating request:

- ``rollout_restart``: what ``kubectl rollout restart`` does, a strategic-merge PATCH of the pod
  template's ``kubectl.kubernetes.io/restartedAt`` annotation, plus the key annotation on the
  template. Undo restores both template annotations from the snapshot, which itself starts a
  new rollout.
- ``scale``: PATCH ``spec.replicas`` together with the key annotation on the workload's metadata
  (one request, so the two cannot disagree; the ``/scale`` subresource could not carry the
  annotation). The target is clamped into ``[min, max]`` and the result says so. Once the key is
  there the scale is applied, whatever an autoscaler made of the replicas since. Undo restores the
  snapshot's replicas while they are still what the scale set (with a resourceVersion
  precondition); moved since by an HPA or a person, it refuses (terminal) rather than undo them.
- ``patch_configmap``: set one ``data`` key and the key annotation on the ConfigMap; undo
  restores the previous value, or removes the key when it did not exist, while the key still holds
  what the action set (else it refuses: someone changed it since). Pods only see the new
  value once they re-read the mount or restart.
- ``delete_pod``: delete one pod (by name, or the oldest pod matching a label selector) with a
  UID precondition, so a pod recreated under the same name is never deleted by a retry.
  ``applied`` is true once that UID is gone or marked for deletion. Cannot be undone.

Errors: 404 is terminal and names the object (``Deployment default/web``); 401/403 are terminal
"forbidden"; 409, 429, 5xx, connection errors and timeouts are retryable. Tokens never appear in
results or errors.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from autonomic.errors import RetryableActuatorError, TerminalActuatorError
from autonomic.printable import counted
from autonomic.protocols import UNIT_READ_TIMEOUT_S, ActuatorContext, Target
from autonomic.redact import scrub, shown_url

ACTION_ANNOTATION = "autonomic.io/action-key"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REQUEST_TIMEOUT_S = 10.0
_REQUESTS_PER_CALL = 4  # the most requests one call makes (read, then patch or delete, and a read back)
_INSTALL_HINT = "the kubernetes actuator needs the kubernetes package: install autonomic[kubernetes]"


# --- parameters and binding --------------------------------------------------------------------


Op = Literal["rollout_restart", "scale", "patch_configmap", "delete_pod"]
_OP_FIELDS: dict[str, tuple[str, ...]] = {
    "rollout_restart": (),
    "scale": ("replicas", "delta", "min", "max"),
    "patch_configmap": ("configmap", "key", "value"),
    "delete_pod": ("pod", "selector"),
}


# An object's name as Kubernetes requires it (an RFC 1123 subdomain; a namespace's, an RFC 1123
# label). Each is a segment of the API's URL path: ``.`` or ``..`` there is a dot segment the HTTP
# client resolves (``pods/..`` is the namespace itself), so a name outside these is refused at load.
OBJECT_NAME = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
NAMESPACE_NAME = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"


def _k8s_name(v: str | None, namespace: bool = False) -> str | None:
    """``v`` when it is a name Kubernetes allows (:data:`OBJECT_NAME`, :data:`NAMESPACE_NAME`), else
    ValueError saying the rule."""
    if v is None:
        return v
    if namespace and not (len(v) <= 63 and re.fullmatch(NAMESPACE_NAME, v)):
        raise ValueError(f"{v!r} is not a Kubernetes namespace: at most 63 lowercase letters, digits and '-', "
                         "starting and ending with a letter or digit")
    if not namespace and not (len(v) <= 253 and re.fullmatch(OBJECT_NAME, v)):
        raise ValueError(f"{v!r} is not a Kubernetes object name: at most 253 lowercase letters, digits, '-' "
                         "and '.', each dot-separated part starting and ending with a letter or digit")
    return v


class KubernetesParams(BaseModel):
    """A pattern's ``action.params``, discriminated by ``op``; each op takes only its own fields:

    - ``rollout_restart``: none.
    - ``scale``: exactly one of ``replicas`` (absolute) or ``delta`` (relative to the replicas in
      the snapshot); the target is clamped into ``[min, max]`` (default 0..100).
    - ``patch_configmap``: ``configmap``, ``key``, ``value`` (all required).
    - ``delete_pod``: exactly one of ``pod`` (a name) or ``selector`` (a label selector; the
      oldest matching pod is deleted).

    One flat model (not a pydantic union) because every actuator's Params forbids unknown keys,
    which a RootModel cannot declare. Dumps hold only ``op`` and that op's fields.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    op: Op
    replicas: int | None = Field(default=None, ge=0)
    delta: int | None = None
    min: int = Field(default=0, ge=0)
    max: int = Field(default=100, ge=0)
    configmap: str | None = Field(default=None, min_length=1)
    key: str | None = Field(default=None, min_length=1)
    value: str | None = None
    pod: str | None = Field(default=None, min_length=1)
    selector: str | None = Field(default=None, min_length=1)

    @field_validator("configmap", "pod")
    @classmethod
    def _object_name(cls, v: str | None) -> str | None:
        return _k8s_name(v)

    @model_validator(mode="after")
    def _check(self) -> KubernetesParams:
        own = _OP_FIELDS[self.op]
        fields = type(self).model_fields
        stray = sorted(f for f in fields if f != "op" and f not in own and getattr(self, f) != fields[f].default)
        if stray:
            raise ValueError(f"{', '.join(stray)}: not a parameter of op {self.op!r} "
                             f"(its parameters: {', '.join(own) or 'none'})")
        if self.op == "scale":
            if (self.replicas is None) == (self.delta is None):
                raise ValueError("scale: give exactly one of replicas or delta")
            if self.min > self.max:
                raise ValueError(f"scale: min ({self.min}) must not be greater than max ({self.max})")
        elif self.op == "patch_configmap":
            missing = [f for f in own if getattr(self, f) is None]
            if missing:
                raise ValueError(f"patch_configmap: {', '.join(missing)} required")
        elif self.op == "delete_pod" and (self.pod is None) == (self.selector is None):
            raise ValueError("delete_pod: give exactly one of pod or selector")
        return self

    @model_serializer(mode="wrap")
    def _only_this_op(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if k == "op" or k in _OP_FIELDS[self.op]}

    def typed(self) -> OpParams:
        """The same parameters as the typed view of its op."""
        if self.op == "scale":
            return ScaleParams(self.replicas, self.delta, self.min, self.max)
        if self.op == "patch_configmap":
            assert self.configmap is not None and self.key is not None and self.value is not None
            return PatchConfigMapParams(self.configmap, self.key, self.value)
        if self.op == "delete_pod":
            return DeletePodParams(self.pod, self.selector)
        return RolloutRestartParams()


# Typed views of KubernetesParams, one per op (validated already; see KubernetesParams.typed).


@dataclass(frozen=True)
class RolloutRestartParams:
    op: ClassVar[str] = "rollout_restart"


@dataclass(frozen=True)
class ScaleParams:
    replicas: int | None
    delta: int | None
    min: int
    max: int
    op: ClassVar[str] = "scale"

    def target(self, current: int) -> tuple[int, int, str | None]:
        """(requested, clamped target, a note when clamping changed it)."""
        requested = self.replicas if self.replicas is not None else current + (self.delta or 0)
        target = max(self.min, min(self.max, requested))
        if target == requested:
            return requested, target, None
        bound = "max" if requested > self.max else "min"
        return requested, target, f"requested {counted(requested, 'replica')}, clamped to {bound} {target}"


@dataclass(frozen=True)
class PatchConfigMapParams:
    configmap: str
    key: str
    value: str
    op: ClassVar[str] = "patch_configmap"


@dataclass(frozen=True)
class DeletePodParams:
    pod: str | None
    selector: str | None
    op: ClassVar[str] = "delete_pod"


OpParams = RolloutRestartParams | ScaleParams | PatchConfigMapParams | DeletePodParams


class KubernetesBinding(BaseModel):
    """Where a service lives in the cluster and how to reach the API server.

    Credentials: ``kubeconfig``/``context`` when given; else ``api_url`` alone (no
    credentials, or ``token_env``); else in-cluster config, falling back to ``~/.kube/config``.
    ``api_url`` overrides the server of whatever was loaded. ``token_env`` names an environment
    variable holding a bearer token (the token itself never goes in the config)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str = Field(default="default", min_length=1)
    kind: Literal["Deployment", "StatefulSet"] = "Deployment"
    name: str = Field(min_length=1)
    kubeconfig: str | None = None
    context: str | None = None
    api_url: str | None = None
    verify_ssl: bool = True
    token_env: str | None = None

    @field_validator("name")
    @classmethod
    def _object_name(cls, v: str) -> str:
        return _k8s_name(v) or v

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        return _k8s_name(v, namespace=True) or v

    @field_validator("api_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"api_url must be an http(s) URL with a host, got {shown_url(v)!r}")
        return v.rstrip("/")

    @property
    def workload(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


# --- talking to the API server --------------------------------------------------------------------


def _import_client() -> tuple[Any, Any, Any]:
    """(kubernetes.client, kubernetes.config, urllib3.exceptions.HTTPError), imported lazily."""
    try:
        from kubernetes import client, config
        from urllib3.exceptions import HTTPError
    except ImportError as exc:
        raise TerminalActuatorError(_INSTALL_HINT) from exc
    return client, config, HTTPError


def _status_message(body: Any) -> str:
    """The ``message`` of a Kubernetes Status body, shortened; "" when there is none."""
    try:
        message = json.loads(body).get("message", "") if body else ""
    except (ValueError, AttributeError):
        message = ""
    return str(message)[:300]


class _Session:
    """One ApiClient for one actuator call; every request returns plain JSON or raises an
    ActuatorError subclass."""

    def __init__(self, b: KubernetesBinding, request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        client, config, self._http_error = _import_client()
        self.b = b
        self.request_timeout_s = request_timeout_s
        cfg = client.Configuration()
        try:
            if b.kubeconfig or b.context:
                config.load_kube_config(config_file=b.kubeconfig, context=b.context, client_configuration=cfg)
            elif not b.api_url:
                if os.environ.get("KUBERNETES_SERVICE_HOST"):
                    config.load_incluster_config(client_configuration=cfg)
                else:
                    config.load_kube_config(client_configuration=cfg)
        except Exception as exc:  # ConfigException, a missing or malformed file, ...
            where = b.kubeconfig or ("in-cluster config" if os.environ.get("KUBERNETES_SERVICE_HOST")
                                     else "~/.kube/config")
            raise TerminalActuatorError(
                f"kubernetes: cannot load credentials from {where}: {type(exc).__name__}"
            ) from None
        if b.api_url:
            cfg.host = b.api_url
        if not b.verify_ssl:
            cfg.verify_ssl = False
        if b.token_env:
            token = os.environ.get(b.token_env)
            if not token:
                raise TerminalActuatorError(f"kubernetes: environment variable {b.token_env} (token_env) is not set")
            cfg.api_key = {"authorization": token}
            cfg.api_key_prefix = {"authorization": "Bearer"}
        cfg.retries = False  # the executor owns retries
        self.host = cfg.host
        self._api_exception = client.ApiException
        self._client = client.ApiClient(cfg)
        self.apps = client.AppsV1Api(self._client)
        self.core = client.CoreV1Api(self._client)

    def close(self) -> None:
        self._client.close()

    def call(self, verb: str, what: str, fn: Callable[..., Any], *args: Any,
             ok_missing: tuple[int, ...] = (), **kwargs: Any) -> dict[str, Any] | None:
        """``fn(*args, **kwargs)`` as raw JSON; None when the status is in ``ok_missing``."""
        try:
            resp = fn(*args, _preload_content=False, _request_timeout=self.request_timeout_s, **kwargs)
        except self._api_exception as exc:
            status = int(exc.status or 0)
            if status in ok_missing:
                return None
            message = _status_message(exc.body)
            detail = f"{verb} {what}: HTTP {status} {exc.reason or ''}".rstrip()
            detail += f": {message}" if message else ""
            if status == 404:
                raise TerminalActuatorError(f"kubernetes: {what} not found ({detail})") from None
            if status in (401, 403):
                raise TerminalActuatorError(f"kubernetes: forbidden: {detail}") from None
            if status in (409, 429) or status >= 500:
                raise RetryableActuatorError(f"kubernetes: {detail}") from None
            raise TerminalActuatorError(f"kubernetes: {detail}") from None
        except (self._http_error, OSError) as exc:
            raise RetryableActuatorError(
                f"kubernetes: {verb} {what}: cannot reach the API server at {shown_url(self.host)}: "
                f"{scrub(str(exc), self.host)}"
            ) from None
        data = resp.data
        return json.loads(data) if data else {}

    # --- objects ---------------------------------------------------------------------------

    def _workload_fns(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        if self.b.kind == "Deployment":
            return self.apps.read_namespaced_deployment, self.apps.patch_namespaced_deployment
        return self.apps.read_namespaced_stateful_set, self.apps.patch_namespaced_stateful_set

    def read_workload(self) -> dict[str, Any]:
        obj = self.call("read", self.b.workload, self._workload_fns()[0], self.b.name, self.b.namespace)
        assert obj is not None
        return obj

    def patch_workload(self, body: dict[str, Any]) -> dict[str, Any]:
        obj = self.call("patch", self.b.workload, self._workload_fns()[1], self.b.name, self.b.namespace, body)
        assert obj is not None
        return obj

    def _cm(self, name: str) -> str:
        return f"ConfigMap {self.b.namespace}/{name}"

    def read_configmap(self, name: str) -> dict[str, Any]:
        obj = self.call("read", self._cm(name), self.core.read_namespaced_config_map, name, self.b.namespace)
        assert obj is not None
        return obj

    def patch_configmap(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        obj = self.call("patch", self._cm(name), self.core.patch_namespaced_config_map, name,
                        self.b.namespace, body)
        assert obj is not None
        return obj

    def _pod(self, name: str) -> str:
        return f"Pod {self.b.namespace}/{name}"

    def read_pod(self, name: str) -> dict[str, Any] | None:
        """The pod, or None when it does not exist."""
        return self.call("read", self._pod(name), self.core.read_namespaced_pod, name, self.b.namespace,
                         ok_missing=(404,))

    def list_pods(self, selector: str) -> list[dict[str, Any]]:
        what = f"pods in {self.b.namespace} matching {selector!r}"
        obj = self.call("list", what, self.core.list_namespaced_pod, self.b.namespace, label_selector=selector)
        return list((obj or {}).get("items") or [])

    def delete_pod(self, name: str, uid: str) -> bool:
        """Delete the pod if it still has ``uid``; False when it was already gone (404) or the
        name now belongs to another pod (409, the UID precondition failed)."""
        body = {"preconditions": {"uid": uid}}
        result = self.call("delete", self._pod(name), self.core.delete_namespaced_pod, name, self.b.namespace,
                           body=body, ok_missing=(404, 409))
        return result is not None


def _annotations(obj: Mapping[str, Any] | None) -> dict[str, str]:
    return dict(((obj or {}).get("metadata") or {}).get("annotations") or {})


def _template(obj: Mapping[str, Any]) -> dict[str, Any]:
    return dict((obj.get("spec") or {}).get("template") or {})


def _replicas(obj: Mapping[str, Any]) -> int:
    replicas = (obj.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)  # the API server's default


def _need(snapshot: Mapping[str, Any], key: str) -> Any:
    if key not in snapshot:
        raise TerminalActuatorError(f"kubernetes: the undo snapshot has no {key!r}; cannot undo")
    return snapshot[key]


# --- the actuator --------------------------------------------------------------------------------


class KubernetesActuator:
    """Acts on a Deployment/StatefulSet, a ConfigMap or a pod through the Kubernetes API
    (see the module docstring for what each ``op`` does and how it stays idempotent)."""

    type: ClassVar[str] = "kubernetes"
    Params = KubernetesParams
    Binding = KubernetesBinding

    def __init__(self, ctx: ActuatorContext) -> None:
        self.ctx = ctx

    # --- protocol ----------------------------------------------------------------------------

    def describe(self, target: Target, params: BaseModel) -> str:
        p, b = _op(params), _binding(target)
        if isinstance(p, RolloutRestartParams):
            return f"rollout restart {b.workload} (set the pod template's {RESTARTED_AT} annotation, as kubectl)"
        if isinstance(p, ScaleParams):
            if p.replicas is not None:
                _, to, note = p.target(0)
                how = f"to {counted(to, 'replica')}" + (f" ({note})" if note else "")
            else:
                how = f"by {'-' if (p.delta or 0) < 0 else '+'}{counted(abs(p.delta or 0), 'replica')}"
            return f"scale {b.workload} {how}, bounds {p.min}..{p.max}"
        if isinstance(p, PatchConfigMapParams):
            value = p.value if len(p.value) <= 60 else p.value[:57] + "..."
            return f"set key {p.key!r} of ConfigMap {b.namespace}/{p.configmap} to {value!r}"
        if p.pod is not None:
            return f"delete pod {b.namespace}/{p.pod}"
        return f"delete the oldest pod in namespace {b.namespace} matching {p.selector!r}"

    def unit_state_limit_s(self, target: Target) -> float:
        """The longest :meth:`unit_state` can take: one request, given ``UNIT_READ_TIMEOUT_S`` to
        connect and as long again to answer."""
        return 2 * UNIT_READ_TIMEOUT_S

    def unit_lane(self, target: Target) -> str:
        """The manager :meth:`unit_state` asks, named for the engine's collection lanes and logs:
        the API server of the binding (its ``api_url``, else its kubeconfig and context, else the
        in-cluster one)."""
        b = _binding(target)
        if b.api_url:
            return f"the Kubernetes API server at {shown_url(b.api_url)}"
        if b.kubeconfig or b.context or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            context = f" (context {b.context})" if b.context else ""
            return f"the Kubernetes API server of {b.kubeconfig or '~/.kube/config'}{context}"
        return "the in-cluster Kubernetes API server"

    def unit_state(self, target: Target) -> dict[str, Any]:
        """The workload's rollout state, read-only, for the unit-state source (``monitor.unitstate``,
        which says what counts as up): ``desired`` (spec.replicas), ``replicas``, ``updated``,
        ``ready`` and ``available`` (its status's counts, 0 when absent), ``generation`` and
        ``observed_generation``. One read, given at most ``UNIT_READ_TIMEOUT_S``; raises
        ActuatorError when the API server cannot be read or the workload does not exist."""
        with _session(_binding(target), UNIT_READ_TIMEOUT_S) as s:
            obj = s.read_workload()
        status = obj.get("status") or {}
        return {"desired": _replicas(obj), "replicas": int(status.get("replicas") or 0),
                "updated": int(status.get("updatedReplicas") or 0), "ready": int(status.get("readyReplicas") or 0),
                "available": int(status.get("availableReplicas") or 0),
                "generation": (obj.get("metadata") or {}).get("generation"),
                "observed_generation": status.get("observedGeneration")}

    def unit_exit_limit_s(self, target: Target) -> float:
        """The longest :meth:`unit_exit` can take: two requests, each given ``UNIT_READ_TIMEOUT_S``
        to connect and as long again to answer."""
        return 2 * 2 * UNIT_READ_TIMEOUT_S

    def unit_exit(self, target: Target) -> str | None:
        """How the workload's pods ended when none of them runs: the first pod (by name) whose
        container has terminated, or waits in ``CrashLoopBackOff``, from its container status
        (reason, exit code, restarts): "pod web-7f9c's container web is in CrashLoopBackOff, last
        terminated with exit code 137 (OOMKilled), 5 restarts". None while any pod has every
        container running, or no pod says how it ended (pending, pulling its image: cannot tell).
        Pods are found by the workload's ``spec.selector.matchLabels`` (``matchExpressions`` are
        not read). Two reads, each given at most ``UNIT_READ_TIMEOUT_S`` (not the 10 s an action's
        request is given: it is made while diagnosing, and an API server that does not answer
        would hold the engine's loop 40 s a diagnosis); raises ActuatorError when the API server
        cannot be read."""
        b = _binding(target)
        with _session(b, UNIT_READ_TIMEOUT_S) as s:
            selector = ((s.read_workload().get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            if not selector:
                return None
            pods = s.list_pods(",".join(f"{k}={v}" for k, v in sorted(selector.items())))
        return _pods_exit(pods)

    def snapshot(self, target: Target, params: BaseModel) -> dict[str, Any]:
        p, b = _op(params), _binding(target)
        with _session(b) as s:
            if isinstance(p, RolloutRestartParams):
                meta = _template(s.read_workload()).get("metadata") or {}
                return {"op": p.op, "template_annotations": dict(meta.get("annotations") or {})}
            if isinstance(p, ScaleParams):
                obj = s.read_workload()
                return {"op": p.op, "replicas": _replicas(obj),
                        "annotation": _annotations(obj).get(ACTION_ANNOTATION)}
            if isinstance(p, PatchConfigMapParams):
                cm = s.read_configmap(p.configmap)
                data = cm.get("data") or {}
                return {"op": p.op, "configmap": p.configmap, "key": p.key, "existed": p.key in data,
                        "value": data.get(p.key), "annotation": _annotations(cm).get(ACTION_ANNOTATION)}
            pod = _resolve_pod(s, p)
            return {"op": p.op, "pod": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}

    def call_limit_s(self, target: Target, params: BaseModel) -> float:
        """The longest one call can take: up to ``_REQUESTS_PER_CALL`` requests to the API server,
        each given REQUEST_TIMEOUT_S to connect and as long again to answer."""
        return _REQUESTS_PER_CALL * 2 * REQUEST_TIMEOUT_S

    def applied(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> bool | None:
        p, b = _op(params), _binding(target)
        with _session(b) as s:
            return self._applied(s, p, key, snapshot)

    def apply(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> dict[str, Any]:
        p, b = _op(params), _binding(target)
        with _session(b) as s:
            if isinstance(p, RolloutRestartParams):
                return self._restart(s, p, key)
            if isinstance(p, ScaleParams):
                return self._scale(s, p, key, snapshot)
            if isinstance(p, PatchConfigMapParams):
                return self._patch_configmap(s, p, key)
            return self._delete_pod(s, p, key, snapshot)

    def undo(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> dict[str, Any]:
        p, b = _op(params), _binding(target)
        if isinstance(p, DeletePodParams):
            return {"op": p.op, "undo": "not applicable",
                    "reason": "a deleted pod cannot be brought back; its controller creates a new one"}
        with _session(b) as s:
            if isinstance(p, RolloutRestartParams):
                return self._undo_restart(s, p, key, snapshot)
            if isinstance(p, ScaleParams):
                obj = s.read_workload()
                if _annotations(obj).get(ACTION_ANNOTATION) != key:
                    return {"op": p.op, "workload": b.workload, "noop": True,
                            "reason": "not applied, or already undone"}
                replicas = int(_need(snapshot, "replicas"))
                ours = p.target(replicas)[1]
                if _replicas(obj) != ours:
                    raise TerminalActuatorError(
                        f"kubernetes: {b.workload} has {counted(_replicas(obj), 'replica')}, not the {ours} "
                        "this action set: an autoscaler or a person has scaled it since; "
                        f"not scaled back to {replicas}")
                # resourceVersion: a change between that read and this PATCH is a 409, not overwritten
                body = {"metadata": {"annotations": {ACTION_ANNOTATION: snapshot.get("annotation")},
                                     "resourceVersion": (obj.get("metadata") or {}).get("resourceVersion")},
                        "spec": {"replicas": replicas}}
                s.patch_workload(body)
                return {"op": p.op, "workload": b.workload, "from": _replicas(obj), "to": replicas}
            return self._undo_configmap(s, p, key, snapshot)

    # --- per op ------------------------------------------------------------------------------

    def _applied(self, s: _Session, p: OpParams, key: str, snapshot: Mapping[str, Any]) -> bool | None:
        if isinstance(p, RolloutRestartParams):
            meta = _template(s.read_workload()).get("metadata") or {}
            return bool((meta.get("annotations") or {}).get(ACTION_ANNOTATION) == key)
        if isinstance(p, ScaleParams):
            # the key is written in the same PATCH as the replicas: it is there once that PATCH
            # landed, whatever an autoscaler or a person has made of the replicas since
            return _annotations(s.read_workload()).get(ACTION_ANNOTATION) == key
        if isinstance(p, PatchConfigMapParams):
            return _annotations(s.read_configmap(p.configmap)).get(ACTION_ANNOTATION) == key
        name, uid = snapshot.get("pod"), snapshot.get("uid")
        if not name or not uid:
            return None
        pod = s.read_pod(str(name))
        meta = (pod or {}).get("metadata") or {}
        return pod is None or meta.get("uid") != uid or bool(meta.get("deletionTimestamp"))

    def _restart(self, s: _Session, p: RolloutRestartParams, key: str) -> dict[str, Any]:
        if self._applied(s, p, key, {}):
            return {"op": p.op, "workload": s.b.workload, "noop": True, "reason": "already applied"}
        stamp = datetime.fromtimestamp(self.ctx.clock.now(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp, ACTION_ANNOTATION: key}}}}}
        obj = s.patch_workload(body)
        generation = (obj.get("metadata") or {}).get("generation")
        return {"op": p.op, "workload": s.b.workload, "restartedAt": stamp, "generation": generation}

    def _undo_restart(
        self, s: _Session, p: RolloutRestartParams, key: str, snapshot: Mapping[str, Any]
    ) -> dict[str, Any]:
        before = dict(_need(snapshot, "template_annotations") or {})
        meta = _template(s.read_workload()).get("metadata") or {}
        if (meta.get("annotations") or {}).get(ACTION_ANNOTATION) != key:
            return {"op": p.op, "workload": s.b.workload, "noop": True, "reason": "not applied, or already undone"}
        restore = {k: before.get(k) for k in (RESTARTED_AT, ACTION_ANNOTATION)}  # None removes the key
        s.patch_workload({"spec": {"template": {"metadata": {"annotations": restore}}}})
        return {"op": p.op, "workload": s.b.workload, "restored": restore,
                "note": "restoring the pod template starts a new rollout"}

    def _scale(self, s: _Session, p: ScaleParams, key: str, snapshot: Mapping[str, Any]) -> dict[str, Any]:
        obj = s.read_workload()
        current = _replicas(obj)
        base = int(snapshot["replicas"]) if snapshot.get("replicas") is not None else current
        requested, target, note = p.target(base)
        detail: dict[str, Any] = {"op": p.op, "workload": s.b.workload, "from": current, "to": target,
                                  "requested": requested}
        if note:
            detail["clamped"] = note
        if _annotations(obj).get(ACTION_ANNOTATION) == key:
            # applied before (the replicas may have moved since: an autoscaler's or a person's
            # to keep, not to scale back over)
            return {**detail, "noop": True, "reason": "already applied"}
        s.patch_workload({"metadata": {"annotations": {ACTION_ANNOTATION: key}}, "spec": {"replicas": target}})
        return detail

    def _patch_configmap(self, s: _Session, p: PatchConfigMapParams, key: str) -> dict[str, Any]:
        cm = s.read_configmap(p.configmap)
        old = (cm.get("data") or {}).get(p.key)
        detail: dict[str, Any] = {"op": p.op, "configmap": f"{s.b.namespace}/{p.configmap}", "key": p.key,
                                  "old": old, "new": p.value}
        if _annotations(cm).get(ACTION_ANNOTATION) == key:
            return {**detail, "noop": True, "reason": "already applied"}
        s.patch_configmap(p.configmap, {"metadata": {"annotations": {ACTION_ANNOTATION: key}},
                                        "data": {p.key: p.value}})
        return detail

    def _undo_configmap(
        self, s: _Session, p: PatchConfigMapParams, key: str, snapshot: Mapping[str, Any]
    ) -> dict[str, Any]:
        existed, value = bool(_need(snapshot, "existed")), snapshot.get("value")
        cm = s.read_configmap(p.configmap)
        detail: dict[str, Any] = {"op": p.op, "configmap": f"{s.b.namespace}/{p.configmap}", "key": p.key}
        if _annotations(cm).get(ACTION_ANNOTATION) != key:
            return {**detail, "noop": True, "reason": "not applied, or already undone"}
        now = (cm.get("data") or {}).get(p.key)
        if now != p.value:
            raise TerminalActuatorError(
                f"kubernetes: key {p.key!r} of ConfigMap {s.b.namespace}/{p.configmap} is {now!r}, not the "
                f"{p.value!r} this action set: someone has changed it since; not put back")
        restore = value if existed else None  # None removes the key
        rv = (cm.get("metadata") or {}).get("resourceVersion")  # changed since that read: a 409
        s.patch_configmap(p.configmap, {"metadata": {"annotations": {ACTION_ANNOTATION: snapshot.get("annotation")},
                                                     "resourceVersion": rv},
                                        "data": {p.key: restore}})
        return {**detail, "old": (cm.get("data") or {}).get(p.key), "new": restore, "removed": not existed}

    def _delete_pod(self, s: _Session, p: DeletePodParams, key: str, snapshot: Mapping[str, Any]) -> dict[str, Any]:
        if snapshot.get("pod") and snapshot.get("uid"):
            name, uid = str(snapshot["pod"]), str(snapshot["uid"])
        else:
            pod = _resolve_pod(s, p)
            name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
        detail: dict[str, Any] = {"op": p.op, "pod": f"{s.b.namespace}/{name}", "uid": uid}
        if self._applied(s, p, key, {"pod": name, "uid": uid}):
            return {**detail, "noop": True, "reason": "already deleted"}
        if not s.delete_pod(name, uid) and not self._applied(s, p, key, {"pod": name, "uid": uid}):
            raise RetryableActuatorError(f"kubernetes: delete Pod {s.b.namespace}/{name}: conflict, try again")
        return detail


# --- helpers -------------------------------------------------------------------------------------


def _pods_exit(pods: list[dict[str, Any]]) -> str | None:
    """How a workload whose pods are ``pods`` ended, when none of them runs (see
    ``KubernetesActuator.unit_exit``)."""
    ended: list[str] = []
    for pod in sorted(pods, key=lambda x: str((x.get("metadata") or {}).get("name"))):
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if meta.get("deletionTimestamp"):
            continue
        containers = status.get("containerStatuses") or []
        if containers and all("running" in (c.get("state") or {}) for c in containers):
            return None  # a pod runs: the workload is not dead
        for c in containers:
            how = _container_end(c)
            if how is not None:
                ended.append(f"pod {meta.get('name')}'s container {c.get('name')} {how}")
                break
    if not ended:
        return None
    return ended[0] + (f" ({counted(len(ended) - 1, 'more pod')} likewise)" if len(ended) > 1 else "")


def _container_end(c: Mapping[str, Any]) -> str | None:
    """How one container status says it ended: terminated, or waiting in CrashLoopBackOff (then
    its last termination); None otherwise (running, creating, pulling its image)."""
    state = c.get("state") or {}
    restarts = int(c.get("restartCount") or 0)
    tail = f", {counted(restarts, 'restart')}" if restarts else ""

    def ended(t: Mapping[str, Any]) -> str:
        reason = f" ({t['reason']})" if t.get("reason") else ""
        return f"terminated with exit code {t.get('exitCode')}{reason}"

    if "terminated" in state:
        return ended(state["terminated"] or {}) + tail
    waiting = state.get("waiting") or {}
    if waiting.get("reason") == "CrashLoopBackOff":
        last = (c.get("lastState") or {}).get("terminated")
        return "is in CrashLoopBackOff" + (f", last {ended(last)}" if last else "") + tail
    return None


def _op(params: BaseModel | Mapping[str, Any]) -> OpParams:
    if isinstance(params, KubernetesParams):
        return params.typed()
    raw = params.model_dump() if isinstance(params, BaseModel) else params
    return KubernetesParams.model_validate(raw).typed()


def _binding(target: Target) -> KubernetesBinding:
    b = target.binding
    if isinstance(b, KubernetesBinding):
        return b
    if b is None:
        raise TerminalActuatorError(f"service {target.service!r} has no kubernetes binding")
    return KubernetesBinding.model_validate(b.model_dump())


@contextlib.contextmanager
def _session(b: KubernetesBinding, request_timeout_s: float = REQUEST_TIMEOUT_S) -> Iterator[_Session]:
    s = _Session(b, request_timeout_s)
    try:
        yield s
    finally:
        s.close()


def _resolve_pod(s: _Session, p: DeletePodParams) -> dict[str, Any]:
    """The pod named by ``p.pod``, or the oldest pod matching ``p.selector`` that is not
    already being deleted."""
    if p.pod is not None:
        pod = s.read_pod(p.pod)
        if pod is None:
            raise TerminalActuatorError(f"kubernetes: Pod {s.b.namespace}/{p.pod} not found")
        return pod
    assert p.selector is not None
    pods = [x for x in s.list_pods(p.selector) if not (x.get("metadata") or {}).get("deletionTimestamp")]
    if not pods:
        raise TerminalActuatorError(
            f"kubernetes: no running pod in namespace {s.b.namespace} matches selector {p.selector!r}"
        )
    return min(pods, key=lambda x: (x["metadata"].get("creationTimestamp") or "", x["metadata"]["name"]))
