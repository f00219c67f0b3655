"""The Kubernetes example (examples/kubernetes/autonomic.yaml) is a file people copy: its
autonomic config must load, and the manifests around it must agree with that config (ports,
probes, the secrets its ``*_env`` fields name, leader election for its replicas)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from autonomic.config import load_config_data

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kubernetes" / "autonomic.yaml"
README = Path(__file__).resolve().parents[2] / "README.md"


def _docs() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d}


def test_the_kubernetes_example_config_loads_with_leader_election_for_its_replicas(tmp_path: Path) -> None:
    docs = _docs()
    data = yaml.safe_load(docs["ConfigMap"]["data"]["autonomic.yaml"])
    data["engine"]["state_dir"] = str(tmp_path)  # the pod's volume does not exist here
    config = load_config_data(data, source="autonomic.yaml", base_dir=tmp_path)
    assert config.engine.leader_election.enabled
    assert docs["Deployment"]["spec"]["replicas"] >= 2
    assert config.database_url.startswith("postgresql")  # replicas on several nodes need a shared server


def test_the_kubernetes_example_probes_ports_and_secrets_agree_with_its_config() -> None:
    docs = _docs()
    config = yaml.safe_load(docs["ConfigMap"]["data"]["autonomic.yaml"])
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (port,) = container["ports"]
    assert port["containerPort"] == config["api"]["port"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # the store answers (a standby too)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert docs["Service"]["spec"]["ports"][0]["targetPort"] == port["name"]
    env = {e["name"] for e in container["env"]}
    assert config["api"]["webhook_token_env"] in env and "PGPASSWORD" in env
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert config["engine"]["state_dir"] in mounts
    assert container["args"][-1].startswith(next(m for m in mounts if m != config["engine"]["state_dir"]))
    assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]


def test_the_kubernetes_example_keeps_one_replica_through_voluntary_disruptions() -> None:
    """A drain evicts one replica at a time, so one is always there to lead."""
    docs = _docs()
    budget = docs["PodDisruptionBudget"]["spec"]
    assert budget["minAvailable"] == 1
    assert budget["selector"]["matchLabels"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]


def test_the_readmes_config_outline_loads_its_commented_out_engine_section_meaning_defaults(tmp_path: Path) -> None:
    """README "The config file": the outline people copy, with ``engine:`` holding only comments.
    Its services load as written: before, web's ``depends_on: [api]`` named a service the outline
    did not have, so a copy of it failed ``autonomic check`` (services: depends on unknown api)."""
    (outline,) = [b for b in re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
                  if b.startswith("engine:")]
    data = yaml.safe_load(outline)
    assert data["engine"] is None  # every key under it is a comment
    data["patterns"] = []  # my-patterns/ is the reader's own folder
    config = load_config_data(data, source="README.md", base_dir=tmp_path)
    assert config.engine.interval_s == 5.0 and config.service("web") is not None


def _readme_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readmes_pattern_example_loads_beside_the_built_in_library_as_written(tmp_path: Path) -> None:
    """README "Writing a pattern": the example people copy into their own patterns folder. Before,
    its ``then:`` named a pattern that exists nowhere and its id was the built-in pool pattern's,
    so a copy of it stopped the engine's start."""
    from autonomic.config import builtin_patterns_dir
    from autonomic.plan.patterns import check_patterns
    from autonomic.registry import default_registry

    (example,) = [b for b in _readme_blocks("yaml") if b.startswith("id:")]
    mine = tmp_path / "my-patterns"
    mine.mkdir()
    (mine / "example.yaml").write_text(example)
    assert check_patterns([builtin_patterns_dir(), mine], default_registry()) == []


def test_the_readmes_one_line_process_binding_loads_as_written(tmp_path: Path) -> None:
    """The ``process:`` binding of the README's log-rotation paragraph, as written."""
    (line,) = re.findall(r"`(process: \{command: .*?\})`", README.read_text(encoding="utf-8"))
    data = {"services": [{"name": "myapp", "actuators": yaml.safe_load(line)}]}
    loaded = load_config_data(data, source="README.md", base_dir=tmp_path)
    assert loaded.bindings["myapp"]["process"].log_backups == 5  # type: ignore[attr-defined]


def test_the_kubernetes_example_lets_a_pod_open_the_store_through_an_upgrade_s_migration_before_liveness() -> None:
    """The API (and so ``/healthz``) starts only once the store is open: after this version's
    migration, or after waiting up to ``_MIGRATION_WAIT_S`` for another replica's. With only the
    liveness probe (3 x 10 s), the kubelet killed a pod still migrating a large store (its
    migration rolled back, to start over at the next start, killed again) and the replica
    waiting for it. A startup probe holds liveness off for longer than that wait."""
    from autonomic.knowledge.store import _MIGRATION_WAIT_S

    (container,) = _docs()["Deployment"]["spec"]["template"]["spec"]["containers"]
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz"
    assert startup["periodSeconds"] * startup["failureThreshold"] > _MIGRATION_WAIT_S
