"""A stand-in Kubernetes API server for the kubernetes actuator's tests.

No real Kubernetes API server can run on the test machine, so this small threaded HTTP server
on 127.0.0.1 speaks the real Kubernetes REST wire protocol for exactly the calls the actuator
makes through the official client:

- GET/PATCH ``/apis/apps/v1/namespaces/{ns}/{deployments|statefulsets}/{name}`` and ``.../scale``
- GET/PATCH ``/api/v1/namespaces/{ns}/configmaps/{name}``
- GET ``/api/v1/namespaces/{ns}/pods?labelSelector=...``, GET/DELETE ``/api/v1/namespaces/{ns}/pods/{name}``

PATCH accepts ``application/strategic-merge-patch+json`` and ``application/merge-patch+json``
(both a recursive dict merge where ``null`` deletes a key) and ``application/json-patch+json``
(``add``/``replace``/``remove``); a ``metadata.resourceVersion`` in a patch is a precondition (409
Conflict when the object has changed since). Objects carry apiVersion, kind, metadata (name,
namespace, uid, resourceVersion bumped on every change, annotations, labels, creationTimestamp),
spec and status; errors are Kubernetes ``Status`` objects. Every request is recorded in :attr:`KubeStandIn.requests`.

With ``rollouts=True`` it also plays the Deployment controller, at once: a change to a workload's
pod template (a rollout restart's annotation) replaces the pods its selector matches with one new,
running pod per replica, named after the new resourceVersion (``web-r123-0``), and a workload read
carries the status counts the controller keeps (``updatedReplicas``; ``readyReplicas`` and
``availableReplicas``: its pods whose containers all run). With ``slow_rollouts`` too, a rollout's
new pods wait in ContainerCreating until :meth:`KubeStandIn.finish_rollouts` (a rollout still in
progress). Off by default: the actuator's own tests look at the API objects alone.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_WORKLOAD = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/(deployments|statefulsets)/([^/]+)(/scale)?$")
_CORE = re.compile(r"^/api/v1/namespaces/([^/]+)/(configmaps|pods)/([^/]+)$")
_POD_LIST = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
_KINDS = {
    "deployments": ("apps/v1", "Deployment"),
    "statefulsets": ("apps/v1", "StatefulSet"),
    "configmaps": ("v1", "ConfigMap"),
    "pods": ("v1", "Pod"),
}
MERGE_TYPES = ("application/strategic-merge-patch+json", "application/merge-patch+json")
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    body: Any
    authorization: str | None


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def status_object(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 merge (what strategic merge does for maps): dicts merge recursively, null deletes."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge(result.get(k), v)
    return result


def json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        node: Any = doc
        for p in parts[:-1]:
            node = node.setdefault(p, {}) if op["op"] == "add" else node[p]
        last = parts[-1]
        if op["op"] in ("add", "replace"):
            if op["op"] == "replace" and last not in node:
                raise ApiError(422, "Invalid", f"replace: path {op['path']} does not exist")
            node[last] = op["value"]
        elif op["op"] == "remove":
            if last not in node:
                raise ApiError(422, "Invalid", f"remove: path {op['path']} does not exist")
            del node[last]
        else:
            raise ApiError(422, "Invalid", f"unsupported json-patch op {op['op']!r}")
    return doc


class KubeStandIn:
    """The stand-in server and its object store. ``token``: when set, requests must carry
    ``Authorization: Bearer <token>`` (else 401). ``fail_next``: HTTP codes to answer the next
    requests with (a Status object each), e.g. ``[409]`` or ``[503]``."""

    def __init__(self, token: str | None = None, rollouts: bool = False, slow_rollouts: bool = False) -> None:
        self.token = token
        self.rollouts = rollouts
        self.slow_rollouts = slow_rollouts
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[Request] = []
        self.fail_next: list[int] = []
        self._lock = threading.Lock()
        self._rv = 100
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> KubeStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- objects ------------------------------------------------------------------------

    def _meta(self, ns: str, name: str, **extra: Any) -> dict[str, Any]:
        self._rv += 1
        meta = {"name": name, "namespace": ns, "uid": str(uuid.uuid4()), "resourceVersion": str(self._rv),
                "creationTimestamp": "2024-01-01T00:00:00Z", "annotations": {}, "labels": {}}
        meta.update(extra)
        return meta

    def add_workload(self, ns: str, name: str, replicas: int = 2, kind: str = "deployments",
                     template_annotations: dict[str, str] | None = None) -> dict[str, Any]:
        api_version, kind_name = _KINDS[kind]
        template_meta: dict[str, Any] = {"labels": {"app": name}}
        if template_annotations is not None:
            template_meta["annotations"] = dict(template_annotations)
        obj = {
            "apiVersion": api_version, "kind": kind_name, "metadata": self._meta(ns, name, generation=1),
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": template_meta,
                                  "spec": {"containers": [{"name": name, "image": f"{name}:1"}]}}},
            "status": {"replicas": replicas, "readyReplicas": replicas, "observedGeneration": 1},
        }
        self.objects[(kind, ns, name)] = obj
        return obj

    def add_configmap(self, ns: str, name: str, data: dict[str, str]) -> dict[str, Any]:
        obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": self._meta(ns, name), "data": dict(data)}
        self.objects[("configmaps", ns, name)] = obj
        return obj

    def add_pod(self, ns: str, name: str, labels: dict[str, str], created: str,
                container_statuses: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """A pod; ``container_statuses`` (the kubelet's ``status.containerStatuses``, e.g. a
        container ``terminated`` or ``waiting`` in CrashLoopBackOff) default to one running ``app``."""
        statuses = container_statuses if container_statuses is not None else [
            {"name": "app", "ready": True, "restartCount": 0, "state": {"running": {"startedAt": created}}}]
        obj = {"apiVersion": "v1", "kind": "Pod",
               "metadata": self._meta(ns, name, labels=dict(labels), creationTimestamp=created),
               "spec": {"containers": [{"name": "app", "image": "app:1"}]},
               "status": {"phase": "Running", "containerStatuses": statuses}}
        self.objects[("pods", ns, name)] = obj
        return obj

    def get(self, kind: str, ns: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            obj = self.objects.get((kind, ns, name))
            return copy.deepcopy(obj) if obj is not None else None

    def mutations(self) -> list[Request]:
        """Recorded PATCH/DELETE/POST/PUT requests."""
        return [r for r in self.requests if r.method in ("PATCH", "DELETE", "POST", "PUT")]

    # --- request handling ---------------------------------------------------------------

    def _find(self, kind: str, ns: str, name: str) -> dict[str, Any]:
        obj = self.objects.get((kind, ns, name))
        if obj is None:
            group = "apps" if kind in ("deployments", "statefulsets") else ""
            what = f"{kind}.{group}" if group else kind
            raise ApiError(404, "NotFound", f'{what} "{name}" not found')
        return obj

    def _patched(self, obj: dict[str, Any], content_type: str | None, body: Any) -> dict[str, Any]:
        if content_type in MERGE_TYPES:
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "merge patch body must be an object")
            return dict(merge(obj, body))
        if content_type == JSON_PATCH:
            if not isinstance(body, list):
                raise ApiError(400, "BadRequest", "json patch body must be a list")
            return json_patch(obj, body)
        raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format "
                       f"- accepted media types include: {', '.join((*MERGE_TYPES, JSON_PATCH))}")

    def _store(self, kind: str, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        if new["metadata"].get("resourceVersion") != old["metadata"]["resourceVersion"]:
            # a patch naming a resourceVersion is a precondition, as on the API server
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind} "{old["metadata"]["name"]}": '
                           "the object has been modified; please apply your changes to the latest version "
                           "and try again")
        for k in ("name", "namespace", "uid", "creationTimestamp"):
            new["metadata"][k] = old["metadata"][k]
        if new != old:
            self._rv += 1
            new["metadata"]["resourceVersion"] = str(self._rv)
            if kind in ("deployments", "statefulsets"):
                if new.get("spec") != old.get("spec"):
                    new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
                replicas = new["spec"].get("replicas", 1)
                new["status"] = {"replicas": replicas, "readyReplicas": replicas,
                                 "observedGeneration": new["metadata"]["generation"]}
                if self.rollouts and (new.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
                    self._roll_out(old["metadata"]["namespace"], new)
        self.objects[(kind, old["metadata"]["namespace"], old["metadata"]["name"])] = new
        return new

    def _roll_out(self, ns: str, workload: dict[str, Any]) -> None:
        """What the Deployment controller makes of a new pod template, done at once: the pods the
        workload's selector matches are replaced by ``spec.replicas`` new running ones."""
        labels = workload["spec"]["selector"]["matchLabels"]
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        for key in [k for k, o in self.objects.items()
                    if k[0] == "pods" and k[1] == ns and self._selected(o["metadata"]["labels"], selector)]:
            del self.objects[key]
        rv = workload["metadata"]["resourceVersion"]
        creating = [{"name": "app", "ready": False, "restartCount": 0,
                     "state": {"waiting": {"reason": "ContainerCreating"}}}] if self.slow_rollouts else None
        for i in range(workload["spec"].get("replicas", 1)):
            self.add_pod(ns, f"{workload['metadata']['name']}-r{rv}-{i}", dict(labels), "2024-01-02T00:00:00Z",
                         copy.deepcopy(creating))

    def finish_rollouts(self) -> None:
        """Every pod still being created runs now (a slow rollout's end)."""
        with self._lock:
            for (kind, _, _), obj in self.objects.items():
                if kind != "pods":
                    continue
                for c in obj["status"]["containerStatuses"]:
                    if (c.get("state") or {}).get("waiting", {}).get("reason") == "ContainerCreating":
                        c["state"], c["ready"] = {"running": {"startedAt": "2024-01-02T00:00:00Z"}}, True

    def _with_counts(self, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
        """``obj`` (a workload) with the status counts the controller keeps, from its pods."""
        selector = ",".join(f"{k}={v}" for k, v in obj["spec"]["selector"]["matchLabels"].items())
        pods = [o for (k, n, _), o in self.objects.items()
                if k == "pods" and n == ns and self._selected(o["metadata"]["labels"], selector)]
        running = sum(1 for p in pods if not p["metadata"].get("deletionTimestamp") and all(
            "running" in (c.get("state") or {}) for c in p["status"]["containerStatuses"]))
        out = copy.deepcopy(obj)
        out["status"].update({"updatedReplicas": obj["status"].get("replicas", 0), "readyReplicas": running,
                              "availableReplicas": running})
        return out

    @staticmethod
    def _scale(obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        labels = obj["spec"]["selector"]["matchLabels"]
        return {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                  "creationTimestamp")},
                "spec": {"replicas": obj["spec"].get("replicas", 1)},
                "status": {"replicas": obj["status"]["replicas"],
                           "selector": ",".join(f"{k}={v}" for k, v in labels.items())}}

    @staticmethod
    def _selected(labels: dict[str, str], selector: str) -> bool:
        for term in filter(None, (t.strip() for t in selector.split(","))):
            if "!=" in term:
                k, v = term.split("!=", 1)
                if labels.get(k.strip()) == v.strip():
                    return False
                continue
            if "=" not in term:
                if term not in labels:
                    return False
                continue
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        return True

    def handle(self, method: str, path: str, query: dict[str, list[str]], content_type: str | None,
               body: Any) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if self.fail_next:
                code = self.fail_next.pop(0)
                reasons = {409: "Conflict", 500: "InternalError", 503: "ServiceUnavailable", 403: "Forbidden"}
                return code, status_object(code, reasons.get(code, "Unknown"), f"injected failure {code}")
            if m := _WORKLOAD.match(path):
                ns, kind, name, scale = m.groups()
                obj = self._find(kind, ns, name)
                if method == "GET":
                    if self.rollouts and not scale:
                        return 200, self._with_counts(ns, obj)
                    return 200, copy.deepcopy(self._scale(obj) if scale else obj)
                if method == "PATCH":
                    if scale:
                        new_scale = self._patched(self._scale(obj), content_type, body)
                        new = copy.deepcopy(obj)
                        new["spec"]["replicas"] = new_scale["spec"]["replicas"]
                        return 200, self._scale(self._store(kind, obj, new))
                    return 200, copy.deepcopy(self._store(kind, obj, self._patched(obj, content_type, body)))
            elif m := _CORE.match(path):
                ns, kind, name = m.groups()
                obj = self._find(kind, ns, name)
                if method == "GET":
                    return 200, copy.deepcopy(obj)
                if method == "PATCH" and kind == "configmaps":
                    return 200, copy.deepcopy(self._store(kind, obj, self._patched(obj, content_type, body)))
                if method == "DELETE" and kind == "pods":
                    want_uid = ((body or {}).get("preconditions") or {}).get("uid")
                    if want_uid and want_uid != obj["metadata"]["uid"]:
                        raise ApiError(409, "Conflict", f"Precondition failed: UID in precondition: {want_uid}, "
                                       f"UID in object meta: {obj['metadata']['uid']}")
                    del self.objects[(kind, ns, name)]
                    return 200, copy.deepcopy(obj)
            elif (m := _POD_LIST.match(path)) and method == "GET":
                ns = m.group(1)
                selector = query.get("labelSelector", [""])[0]
                items = [copy.deepcopy(o) for (k, n, _), o in sorted(self.objects.items())
                         if k == "pods" and n == ns and self._selected(o["metadata"]["labels"], selector)]
                self._rv += 1
                return 200, {"apiVersion": "v1", "kind": "PodList",
                             "metadata": {"resourceVersion": str(self._rv)}, "items": items}
            else:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on {path}")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet tests
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip() or None
                auth = self.headers.get("Authorization")
                query = parse_qs(parts.query)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                standin.requests.append(Request(self.command, parts.path, query, content_type, body, auth))
                if standin.token is not None and auth != f"Bearer {standin.token}":
                    code, payload = 401, status_object(401, "Unauthorized", "Unauthorized")
                else:
                    try:
                        code, payload = standin.handle(self.command, parts.path, query, content_type, body)
                    except ApiError as e:
                        code, payload = e.code, status_object(e.code, e.reason, e.message)
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_DELETE = do_POST = do_PUT = _serve

        return Handler


@contextmanager
def running(token: str | None = None, rollouts: bool = False, slow_rollouts: bool = False) -> Iterator[KubeStandIn]:
    server = KubeStandIn(token=token, rollouts=rollouts, slow_rollouts=slow_rollouts).start()
    try:
        yield server
    finally:
        server.stop()
