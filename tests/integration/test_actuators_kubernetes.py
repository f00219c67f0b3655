"""The kubernetes actuator, through the official client, against a wire-level stand-in.

No Kubernetes API server can run on this machine, so these tests run the real ``kubernetes``
client against :mod:`kube_standin`: a threaded HTTP server on 127.0.0.1 that speaks the
Kubernetes REST protocol (paths, PATCH content types, Status error objects, resourceVersion)
for exactly the calls the actuator makes.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

sys.path.insert(0, str(Path(__file__).parent))

from kube_standin import ApiError, KubeStandIn, running  # noqa: E402

from autonomic.errors import PatternError, RetryableActuatorError, TerminalActuatorError  # noqa: E402
from autonomic.execute.kubernetes_actuator import (  # noqa: E402
    ACTION_ANNOTATION,
    RESTARTED_AT,
    KubernetesActuator,
    KubernetesBinding,
    KubernetesParams,
    ScaleParams,
)
from autonomic.plan.patterns import load_patterns  # noqa: E402
from autonomic.protocols import Actuator, ActuatorContext, Target  # noqa: E402
from autonomic.registry import Registry  # noqa: E402

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


class FixedClock:
    def now(self) -> float:
        return NOW

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@pytest.fixture
def kube() -> Iterator[KubeStandIn]:
    with running() as server:
        server.add_workload("shop", "web", replicas=2, template_annotations={"team": "payments"})
        yield server


@pytest.fixture
def act(tmp_path: Path) -> KubernetesActuator:
    return KubernetesActuator(ActuatorContext(clock=FixedClock(), state_dir=tmp_path))


def target(server: KubeStandIn, **binding: Any) -> Target:
    fields = {"namespace": "shop", "name": "web", "api_url": server.url, **binding}
    return Target(service="web", binding=KubernetesBinding(**fields))


def params(**raw: Any) -> KubernetesParams:
    return KubernetesParams.model_validate(raw)


def template_annotations(server: KubeStandIn, kind: str = "deployments", name: str = "web") -> dict[str, str]:
    obj = server.get(kind, "shop", name)
    assert obj is not None
    return dict(obj["spec"]["template"]["metadata"].get("annotations") or {})


# --- rollout_restart --------------------------------------------------------------------------


def test_rollout_restart_patches_restarted_at_like_kubectl_and_undo_restores_the_template(
    kube: KubeStandIn, act: KubernetesActuator
) -> None:
    assert isinstance(act, Actuator)
    t, p = target(kube), params(op="rollout_restart")
    snap = act.snapshot(t, p)
    assert snap["template_annotations"] == {"team": "payments"}
    assert act.applied(t, p, "k1", snap) is False

    detail = act.apply(t, p, "k1", snap)
    assert detail["restartedAt"] == "2023-11-14T22:13:20Z" and detail["generation"] == 2
    [patch] = kube.mutations()
    assert patch.path == "/apis/apps/v1/namespaces/shop/deployments/web"
    assert patch.content_type == "application/strategic-merge-patch+json"
    assert patch.body == {"spec": {"template": {"metadata": {"annotations": {
        RESTARTED_AT: "2023-11-14T22:13:20Z", ACTION_ANNOTATION: "k1"}}}}}
    assert template_annotations(kube) == {"team": "payments", RESTARTED_AT: "2023-11-14T22:13:20Z",
                                          ACTION_ANNOTATION: "k1"}
    assert act.applied(t, p, "k1", snap) is True

    again = act.apply(t, p, "k1", snap)
    assert again["noop"] is True and len(kube.mutations()) == 1

    undone = act.undo(t, p, "k1", snap)
    assert "new rollout" in undone["note"]
    assert template_annotations(kube) == {"team": "payments"}
    assert act.applied(t, p, "k1", snap) is False
    assert act.undo(t, p, "k1", snap)["noop"] is True and len(kube.mutations()) == 2


def test_rollout_restart_of_a_statefulset_uses_the_statefulsets_path(act: KubernetesActuator) -> None:
    with running() as kube:
        kube.add_workload("shop", "db", kind="statefulsets")
        t, p = target(kube, kind="StatefulSet", name="db"), params(op="rollout_restart")
        act.apply(t, p, "k1", act.snapshot(t, p))
        assert [r.path for r in kube.mutations()] == ["/apis/apps/v1/namespaces/shop/statefulsets/db"]
        assert template_annotations(kube, "statefulsets", "db")[ACTION_ANNOTATION] == "k1"


# --- scale --------------------------------------------------------------------------------------


def test_scale_sets_replicas_with_the_key_once_and_undo_restores_them(
    kube: KubeStandIn, act: KubernetesActuator
) -> None:
    t, p = target(kube), params(op="scale", delta=3)
    snap = act.snapshot(t, p)
    assert snap["replicas"] == 2 and snap["annotation"] is None
    assert act.applied(t, p, "k1", snap) is False

    detail = act.apply(t, p, "k1", snap)
    assert (detail["from"], detail["to"]) == (2, 5) and "clamped" not in detail
    web = kube.get("deployments", "shop", "web")
    assert web is not None and web["spec"]["replicas"] == 5
    assert web["metadata"]["annotations"][ACTION_ANNOTATION] == "k1"
    assert act.applied(t, p, "k1", snap) is True

    assert act.apply(t, p, "k1", snap)["noop"] is True  # delta from the snapshot, not from now: no 8
    assert len(kube.mutations()) == 1

    act.undo(t, p, "k1", snap)
    web = kube.get("deployments", "shop", "web")
    assert web is not None and web["spec"]["replicas"] == 2
    assert ACTION_ANNOTATION not in web["metadata"]["annotations"]
    assert act.undo(t, p, "k1", snap)["noop"] is True and len(kube.mutations()) == 2


@pytest.mark.parametrize(
    ("raw", "expected", "note"),
    [
        ({"replicas": 150, "max": 10}, 10, "requested 150 replicas, clamped to max 10"),
        ({"delta": -5, "min": 1}, 1, "requested -3 replicas, clamped to min 1"),
    ],
)
def test_scale_clamps_to_its_bounds_and_says_so(
    kube: KubeStandIn, act: KubernetesActuator, raw: dict[str, Any], expected: int, note: str
) -> None:
    t, p = target(kube), params(op="scale", **raw)
    detail = act.apply(t, p, "k1", act.snapshot(t, p))
    assert detail["to"] == expected and detail["clamped"] == note
    web = kube.get("deployments", "shop", "web")
    assert web is not None and web["spec"]["replicas"] == expected


def test_params_refuse_bad_bounds_ambiguous_targets_and_fields_of_other_ops() -> None:
    with pytest.raises(ValidationError, match="exactly one of replicas or delta"):
        params(op="scale", replicas=3, delta=1)
    with pytest.raises(ValidationError, match="min .5. must not be greater than max .2."):
        params(op="scale", replicas=3, min=5, max=2)
    with pytest.raises(ValidationError, match="replicas"):
        params(op="scale", replicas=-1)
    with pytest.raises(ValidationError, match="rollout_restart"):
        params(op="restart_everything")
    with pytest.raises(ValidationError, match="Extra inputs"):
        params(op="rollout_restart", force=True)
    with pytest.raises(ValidationError, match="replicas: not a parameter of op 'rollout_restart'"):
        params(op="rollout_restart", replicas=3)
    with pytest.raises(ValidationError, match="patch_configmap: key, value required"):
        params(op="patch_configmap", configmap="cfg")
    with pytest.raises(ValidationError, match="delete_pod: give exactly one of pod or selector"):
        params(op="delete_pod")


# --- patch_configmap ----------------------------------------------------------------------------


def test_patch_configmap_sets_the_key_and_undo_restores_the_previous_value(
    kube: KubeStandIn, act: KubernetesActuator
) -> None:
    kube.add_configmap("shop", "web-config", {"POOL_SIZE": "10", "MODE": "fast"})
    t = target(kube)
    p = params(op="patch_configmap", configmap="web-config", key="POOL_SIZE", value="40")
    snap = act.snapshot(t, p)
    assert (snap["existed"], snap["value"]) == (True, "10")
    assert act.applied(t, p, "k1", snap) is False

    assert act.apply(t, p, "k1", snap)["old"] == "10"
    cm = kube.get("configmaps", "shop", "web-config")
    assert cm is not None and cm["data"] == {"POOL_SIZE": "40", "MODE": "fast"}
    assert cm["metadata"]["annotations"][ACTION_ANNOTATION] == "k1"
    assert kube.mutations()[0].path == "/api/v1/namespaces/shop/configmaps/web-config"
    assert act.applied(t, p, "k1", snap) is True
    assert act.apply(t, p, "k1", snap)["noop"] is True and len(kube.mutations()) == 1

    act.undo(t, p, "k1", snap)
    cm = kube.get("configmaps", "shop", "web-config")
    assert cm is not None and cm["data"] == {"POOL_SIZE": "10", "MODE": "fast"}
    assert ACTION_ANNOTATION not in cm["metadata"]["annotations"]
    assert act.undo(t, p, "k1", snap)["noop"] is True and len(kube.mutations()) == 2


def test_patch_configmap_undo_removes_a_key_that_did_not_exist(kube: KubeStandIn, act: KubernetesActuator) -> None:
    kube.add_configmap("shop", "web-config", {"MODE": "fast"})
    t, p = target(kube), params(op="patch_configmap", configmap="web-config", key="DEBUG", value="1")
    snap = act.snapshot(t, p)
    assert snap["existed"] is False
    act.apply(t, p, "k1", snap)
    assert (kube.get("configmaps", "shop", "web-config") or {})["data"] == {"MODE": "fast", "DEBUG": "1"}
    assert act.undo(t, p, "k1", snap)["removed"] is True
    assert (kube.get("configmaps", "shop", "web-config") or {})["data"] == {"MODE": "fast"}


def test_patch_configmap_undo_does_not_overwrite_a_value_someone_set_since(
    kube: KubeStandIn, act: KubernetesActuator
) -> None:
    """After the action set POOL_SIZE to 40 a person set it to 60: undo refuses (a person decides)
    rather than put back the 10 of the snapshot over their change."""
    kube.add_configmap("shop", "web-config", {"POOL_SIZE": "10"})
    t = target(kube)
    p = params(op="patch_configmap", configmap="web-config", key="POOL_SIZE", value="40")
    snap = act.snapshot(t, p)
    act.apply(t, p, "k1", snap)
    kube.handle("PATCH", "/api/v1/namespaces/shop/configmaps/web-config", {}, "application/merge-patch+json",
                {"data": {"POOL_SIZE": "60"}})
    with pytest.raises(TerminalActuatorError, match="is '60', not the '40' this action set"):
        act.undo(t, p, "k1", snap)
    assert (kube.get("configmaps", "shop", "web-config") or {})["data"] == {"POOL_SIZE": "60"}


def test_missing_configmap_is_terminal_naming_it(kube: KubeStandIn, act: KubernetesActuator) -> None:
    p = params(op="patch_configmap", configmap="nope", key="A", value="1")
    with pytest.raises(TerminalActuatorError, match="ConfigMap shop/nope not found"):
        act.snapshot(target(kube), p)


# --- delete_pod ----------------------------------------------------------------------------------


def test_delete_pod_by_selector_deletes_only_the_oldest_match_once(
    kube: KubeStandIn, act: KubernetesActuator
) -> None:
    kube.add_pod("shop", "web-b", {"app": "web"}, "2024-01-02T00:00:00Z")
    kube.add_pod("shop", "web-a", {"app": "web"}, "2024-01-03T00:00:00Z")
    old = kube.add_pod("shop", "web-c", {"app": "web"}, "2024-01-01T00:00:00Z")
    kube.add_pod("shop", "db-0", {"app": "db"}, "2023-01-01T00:00:00Z")
    t, p = target(kube), params(op="delete_pod", selector="app=web")

    snap = act.snapshot(t, p)
    assert snap == {"op": "delete_pod", "pod": "web-c", "uid": old["metadata"]["uid"]}
    lists = [r for r in kube.requests if r.path == "/api/v1/namespaces/shop/pods"]
    assert lists[0].query == {"labelSelector": ["app=web"]}
    assert act.applied(t, p, "k1", snap) is False

    act.apply(t, p, "k1", snap)
    [delete] = kube.mutations()
    assert (delete.method, delete.path) == ("DELETE", "/api/v1/namespaces/shop/pods/web-c")
    assert delete.body["preconditions"] == {"uid": old["metadata"]["uid"]}
    assert {k[2] for k in kube.objects if k[0] == "pods"} == {"web-a", "web-b", "db-0"}
    assert act.applied(t, p, "k1", snap) is True

    assert act.apply(t, p, "k1", snap)["noop"] is True and len(kube.mutations()) == 1
    assert act.undo(t, p, "k1", snap)["undo"] == "not applicable"


def test_delete_pod_never_deletes_a_pod_recreated_under_the_same_name(
    kube: KubeStandIn, act: KubernetesActuator
) -> None:
    kube.add_pod("shop", "web-0", {"app": "web"}, "2024-01-01T00:00:00Z")
    t, p = target(kube), params(op="delete_pod", pod="web-0")
    snap = act.snapshot(t, p)
    del kube.objects[("pods", "shop", "web-0")]
    kube.add_pod("shop", "web-0", {"app": "web"}, "2024-01-05T00:00:00Z")  # its controller made a new one

    assert act.applied(t, p, "k1", snap) is True
    assert act.apply(t, p, "k1", snap)["noop"] is True
    assert kube.mutations() == [] and kube.get("pods", "shop", "web-0") is not None


def test_delete_pod_with_no_match_is_terminal(kube: KubeStandIn, act: KubernetesActuator) -> None:
    with pytest.raises(TerminalActuatorError, match="no running pod in namespace shop matches selector 'app=x'"):
        act.snapshot(target(kube), params(op="delete_pod", selector="app=x"))


# --- errors ------------------------------------------------------------------------------------


def test_unknown_workload_is_terminal_naming_namespace_kind_and_name(
    kube: KubeStandIn, act: KubernetesActuator
) -> None:
    t = target(kube, kind="StatefulSet", name="ghost")
    with pytest.raises(TerminalActuatorError, match="StatefulSet shop/ghost not found"):
        act.snapshot(t, params(op="scale", replicas=3))
    with pytest.raises(TerminalActuatorError, match="StatefulSet shop/ghost not found"):
        act.apply(t, params(op="rollout_restart"), "k1", {})


def test_api_server_down_is_retryable(act: KubernetesActuator) -> None:
    with running() as kube:
        t = target(kube)
    started = time.monotonic()
    with pytest.raises(RetryableActuatorError, match="cannot reach the API server"):
        act.apply(t, params(op="scale", replicas=3), "k1", {})
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("code", [409, 500, 503])
def test_conflict_and_server_errors_are_retryable(kube: KubeStandIn, act: KubernetesActuator, code: int) -> None:
    kube.fail_next = [code]
    with pytest.raises(RetryableActuatorError, match=f"HTTP {code}"):
        act.snapshot(target(kube), params(op="rollout_restart"))
    act.snapshot(target(kube), params(op="rollout_restart"))  # the next try goes through


def test_bearer_token_from_env_is_sent_and_a_wrong_one_is_forbidden_without_leaking_it(
    act: KubernetesActuator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running(token="s3cret-token") as kube:
        kube.add_workload("shop", "web")
        monkeypatch.setenv("KUBE_TOKEN", "s3cret-token")
        t, p = target(kube, token_env="KUBE_TOKEN"), params(op="rollout_restart")
        assert act.snapshot(t, p)["template_annotations"] == {}
        assert kube.requests[-1].authorization == "Bearer s3cret-token"

        monkeypatch.setenv("KUBE_TOKEN", "wrong-token-value")
        with pytest.raises(TerminalActuatorError, match="forbidden") as err:
            act.snapshot(t, p)
        assert "wrong-token-value" not in str(err.value) and "s3cret" not in str(err.value)

        kube.fail_next = [403]
        monkeypatch.setenv("KUBE_TOKEN", "s3cret-token")
        with pytest.raises(TerminalActuatorError, match="forbidden") as err:
            act.snapshot(t, p)
        assert "s3cret" not in str(err.value)

        monkeypatch.delenv("KUBE_TOKEN")
        with pytest.raises(TerminalActuatorError, match="KUBE_TOKEN .token_env. is not set"):
            act.snapshot(t, p)


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: standin, cluster: {server: "URL"}}]
users: [{name: bot, user: {token: kubeconfig-s3cret}}]
contexts:
- {name: other, context: {cluster: standin, user: nobody}}
- {name: ops, context: {cluster: standin, user: bot}}
current-context: other
"""


def test_credentials_come_from_the_kubeconfig_context_and_a_broken_file_does_not_leak_them(
    act: KubernetesActuator, tmp_path: Path
) -> None:
    with running(token="kubeconfig-s3cret") as kube:
        kube.add_workload("shop", "web", replicas=4)
        path = tmp_path / "kubeconfig"
        path.write_text(KUBECONFIG.replace("URL", kube.url))
        t = Target(service="web", binding=KubernetesBinding(namespace="shop", name="web", kubeconfig=str(path),
                                                            context="ops"))
        assert act.snapshot(t, params(op="scale", replicas=1))["replicas"] == 4
        assert kube.requests[-1].authorization == "Bearer kubeconfig-s3cret"

        path.write_text(KUBECONFIG.replace("URL", kube.url)[:-40] + "[{{: kubeconfig-s3cret")
        with pytest.raises(TerminalActuatorError, match="cannot load credentials from .*kubeconfig") as err:
            act.snapshot(t, params(op="scale", replicas=1))
        assert "s3cret" not in str(err.value)


def test_missing_kubernetes_package_is_terminal_with_install_hint(
    kube: KubeStandIn, act: KubernetesActuator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # makes `import kubernetes` fail
    with pytest.raises(TerminalActuatorError, match=r"install autonomic\[kubernetes\]"):
        act.snapshot(target(kube), params(op="rollout_restart"))


def test_describe_makes_no_request(kube: KubeStandIn, act: KubernetesActuator) -> None:
    t = target(kube)
    lines = [
        act.describe(t, params(op="rollout_restart")),
        act.describe(t, params(op="scale", replicas=500)),
        act.describe(t, params(op="scale", delta=2)),
        act.describe(t, params(op="patch_configmap", configmap="cfg", key="A", value="1")),
        act.describe(t, params(op="delete_pod", selector="app=web")),
    ]
    assert lines == [
        f"rollout restart Deployment shop/web (set the pod template's {RESTARTED_AT} annotation, as kubectl)",
        "scale Deployment shop/web to 100 replicas (requested 500 replicas, clamped to max 100), bounds 0..100",
        "scale Deployment shop/web by +2 replicas, bounds 0..100",
        "set key 'A' of ConfigMap shop/cfg to '1'",
        "delete the oldest pod in namespace shop matching 'app=web'",
    ]
    assert kube.requests == []


def test_binding_refuses_a_bad_api_url_and_kind() -> None:
    with pytest.raises(ValidationError, match="api_url must be an http"):
        KubernetesBinding(name="web", api_url="localhost:6443")
    with pytest.raises(ValidationError, match="kind"):
        KubernetesBinding.model_validate({"name": "web", "kind": "DaemonSet"})


# --- patterns ----------------------------------------------------------------------------------


PATTERN = """\
id: pool-exhaustion-scale-out
match: {cause: pool}
action:
  type: kubernetes
  params: {op: scale, delta: 2, max: 12}
prior_confidence: 0.7
rollback_safe: true
verify: {metric: pool_utilization, max: 80}
"""


def test_load_patterns_accepts_a_kubernetes_pattern_when_registered(tmp_path: Path) -> None:
    registry = Registry()
    registry.register("actuator", KubernetesActuator.type, KubernetesActuator)
    (tmp_path / "scale.yaml").write_text(PATTERN)
    [pattern] = load_patterns([tmp_path / "scale.yaml"], registry)
    assert pattern.action is not None and pattern.action.type == "kubernetes"
    # the dump holds only the op and its own fields
    assert pattern.action.params == {"op": "scale", "replicas": None, "delta": 2, "min": 0, "max": 12}
    reloaded = KubernetesParams.model_validate(pattern.action.params).typed()  # round-trips
    assert isinstance(reloaded, ScaleParams) and reloaded.delta == 2

    (tmp_path / "scale.yaml").write_text(PATTERN.replace("delta: 2", "delta: 2, replicas: 4"))
    with pytest.raises(PatternError, match=r"scale.yaml:5: action.params.*exactly one of replicas or delta"):
        load_patterns([tmp_path / "scale.yaml"], registry)


def test_standin_speaks_the_scale_subresource_and_json_patch_like_the_api_server(kube: KubeStandIn) -> None:
    """Keeps the stand-in honest for the calls the client can send besides the actuator's own."""
    from kubernetes import client

    with client.ApiClient(client.Configuration(host=kube.url)) as api:
        apps = client.AppsV1Api(api)
        scale: Any = apps.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": 7}},
                                                       _preload_content=False)
        assert json.loads(scale.data)["kind"] == "Scale"
        ops = [{"op": "add", "path": "/metadata/annotations/a~1b", "value": "1"}]
        apps.patch_namespaced_deployment("web", "shop", ops, _preload_content=False)
    assert [r.content_type for r in kube.mutations()] == ["application/strategic-merge-patch+json",
                                                          "application/json-patch+json"]
    web = kube.get("deployments", "shop", "web")
    assert web is not None and web["spec"]["replicas"] == 7 and web["metadata"]["annotations"]["a/b"] == "1"


def test_meets_the_actuator_contract_that_registered_plugins_must_pass(act: KubernetesActuator) -> None:
    """The checks of tests/unit/test_contracts.py, which run once the actuator is registered."""
    for model in (KubernetesParams, KubernetesBinding):
        assert model.model_config.get("extra") == "forbid" and model.model_config.get("frozen") is True
    assert isinstance(act, Actuator) and KubernetesActuator.type == "kubernetes"
    with pytest.raises(ValidationError):
        KubernetesParams.model_validate({"surely_not_a_param": 1})


def test_a_scale_an_autoscaler_moved_since_is_neither_applied_again_nor_scaled_back_by_undo(
    kube: KubeStandIn, act: KubernetesActuator
) -> None:
    """After the scale to 5 an HPA scaled the Deployment to 7 (the /scale subresource, the key
    annotation untouched). Recovery after a crash learns the scale took effect and a repeated
    apply sends nothing, instead of setting 5 over the HPA's 7; undo refuses to drop 7 pods' worth
    of an autoscaler's decision back to the snapshot's 2 (a person decides)."""
    t, p = target(kube), params(op="scale", delta=3)
    snap = act.snapshot(t, p)
    act.apply(t, p, "k1", snap)
    kube.handle("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web/scale", {},
                "application/merge-patch+json", {"spec": {"replicas": 7}})
    assert act.applied(t, p, "k1", snap) is True
    again = act.apply(t, p, "k1", snap)
    assert again["noop"] is True and len(kube.mutations()) == 1
    with pytest.raises(TerminalActuatorError, match="has 7 replicas, not the 5 this action set"):
        act.undo(t, p, "k1", snap)
    web = kube.get("deployments", "shop", "web")
    assert web is not None and web["spec"]["replicas"] == 7


def test_standin_refuses_a_patch_whose_resource_version_is_stale(kube: KubeStandIn) -> None:
    """As the API server: a patch naming an old resourceVersion is a 409 Conflict, nothing changed."""
    path = "/apis/apps/v1/namespaces/shop/deployments/web"
    web = kube.get("deployments", "shop", "web")
    assert web is not None
    stale = web["metadata"]["resourceVersion"]
    kube.handle("PATCH", path, {}, "application/merge-patch+json", {"spec": {"replicas": 3}})
    with pytest.raises(ApiError) as err:
        kube.handle("PATCH", path, {}, "application/merge-patch+json",
                    {"metadata": {"resourceVersion": stale}, "spec": {"replicas": 9}})
    assert err.value.code == 409
    web = kube.get("deployments", "shop", "web")
    assert web is not None and web["spec"]["replicas"] == 3


def _terminated(code: int, reason: str) -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": reason, "startedAt": "2024-01-01T00:00:00Z",
                           "finishedAt": "2024-01-01T00:01:00Z"}}


def test_unit_exit_says_how_a_workloads_pods_ended_when_none_of_them_runs(act: KubernetesActuator) -> None:
    """``unit_exit`` reads the Deployment's selector, then its pods, through the real client
    from the stand-in API server: a container terminated (reason, exit code) or waiting in
    CrashLoopBackOff (with its last termination and restarts). None while one pod runs, and for
    pods that say nothing of how they ended (pulling an image)."""
    with running() as kube:
        kube.add_workload("shop", "web")
        t = target(kube)
        assert act.unit_exit(t) is None  # no pods: cannot tell
        crashloop = {"name": "app", "ready": False, "restartCount": 5,
                     "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
                     "lastState": _terminated(137, "OOMKilled")}
        kube.add_pod("shop", "web-b", {"app": "web"}, "2024-01-01T00:00:00Z", [crashloop])
        kube.add_pod("shop", "web-a", {"app": "web"}, "2024-01-01T00:00:00Z",
                     [{"name": "app", "ready": False, "restartCount": 0, "state": _terminated(1, "Error")}])
        kube.add_pod("shop", "other", {"app": "other"}, "2024-01-01T00:00:00Z")  # another workload's, running
        assert act.unit_exit(t) == ("pod web-a's container app terminated with exit code 1 (Error) "
                                    "(1 more pod likewise)")
        kube.objects.pop(("pods", "shop", "web-a"))
        assert act.unit_exit(t) == ("pod web-b's container app is in CrashLoopBackOff, last terminated with exit "
                                    "code 137 (OOMKilled), 5 restarts")
        kube.add_pod("shop", "web-c", {"app": "web"}, "2024-01-01T00:00:00Z")  # one pod runs: not dead
        assert act.unit_exit(t) is None
        kube.objects.pop(("pods", "shop", "web-c"))
        kube.objects.pop(("pods", "shop", "web-b"))
        kube.add_pod("shop", "web-d", {"app": "web"}, "2024-01-01T00:00:00Z",
                     [{"name": "app", "ready": False, "restartCount": 0,
                       "state": {"waiting": {"reason": "ContainerCreating"}}}])
        assert act.unit_exit(t) is None


def test_unit_exit_gives_an_api_server_that_does_not_answer_5_s_a_read_not_an_actions_10_s(
        act: KubernetesActuator, monkeypatch: pytest.MonkeyPatch) -> None:
    """``unit_exit`` is read while diagnosing, inside the engine's loop: each of its requests is
    given at most 5 s, as systemd's and Docker's reads are (the README says so). An API server
    that takes 7 s to list the pods makes it raise a retryable error (taken as not seen dead).
    Before, it was given an action's 10 s a request: it waited the 7 s out, and an API server
    that did not answer at all held the loop 40 s a diagnosis."""
    with running() as kube:
        kube.add_workload("shop", "web")
        kube.add_pod("shop", "web-a", {"app": "web"}, "2024-01-01T00:00:00Z",
                     [{"name": "app", "ready": False, "restartCount": 0, "state": _terminated(1, "Error")}])
        handle = kube.handle

        def slow_pods(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            if path.endswith("/pods"):
                time.sleep(7)
            return handle(method, path, *args, **kwargs)

        monkeypatch.setattr(kube, "handle", slow_pods)
        with pytest.raises(RetryableActuatorError):
            act.unit_exit(target(kube))


def test_describe_and_clamping_count_replicas_in_words(kube: KubeStandIn, act: KubernetesActuator) -> None:
    """One replica is "1 replica", any other number "N replicas", whether scaled to or by it; the
    note a clamp leaves says so too (the actuator over the stand-in API server, making no request)."""
    t = target(kube)
    assert [act.describe(t, params(op="scale", **raw)) for raw in (
        {"replicas": 1}, {"replicas": 2}, {"delta": 1}, {"delta": -1}, {"delta": -2},
        {"replicas": 1, "min": 2})] == [
        "scale Deployment shop/web to 1 replica, bounds 0..100",
        "scale Deployment shop/web to 2 replicas, bounds 0..100",
        "scale Deployment shop/web by +1 replica, bounds 0..100",
        "scale Deployment shop/web by -1 replica, bounds 0..100",
        "scale Deployment shop/web by -2 replicas, bounds 0..100",
        "scale Deployment shop/web to 2 replicas (requested 1 replica, clamped to min 2), bounds 2..100",
    ]
    assert kube.requests == []


def test_unit_exit_counts_the_other_dead_pods_in_words(act: KubernetesActuator) -> None:
    with running() as kube:
        kube.add_workload("shop", "web")
        t = target(kube)
        for name in ("web-a", "web-b", "web-c"):
            kube.add_pod("shop", name, {"app": "web"}, "2024-01-01T00:00:00Z",
                         [{"name": "app", "ready": False, "restartCount": 0, "state": _terminated(1, "Error")}])
        assert act.unit_exit(t) == ("pod web-a's container app terminated with exit code 1 (Error) "
                                    "(2 more pods likewise)")
