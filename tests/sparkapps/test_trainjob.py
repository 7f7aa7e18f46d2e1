"""The chart's training workload: a Kubeflow Trainer v2 TrainJob, rendered by the real helm.

Its schema is the Trainer's Python models (``kubeflow-trainer-api``, generated from
the Trainer's OpenAPI schema), NOT the cluster's CRD: no TrainJob CRD is available
offline. The pod parts go through kubernetes-validate like every other pod template.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sparkapps.problems import Check
from sparkapps.trainjob import API_VERSION, trainjob_problems
from sparkapps.validation import validate
from tests.sparkapps.pod_security import Level, pod_violations
from tests.sparkapps.test_helm import CHART, by_kind, helm, run_helm, template, template_text

__all__ = ["helm"]  # the fixture, shared with test_helm

pytestmark = pytest.mark.k8s

ON = ("--set", "training.enabled=true")


def the_trainjob(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (job,) = by_kind(objects, "TrainJob")
    return job


def env_of(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in job["spec"]["trainer"]["env"]}


def pod_patch(job: dict[str, Any]) -> dict[str, Any]:
    (patch,) = job["spec"]["runtimePatches"]
    (replicated,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert replicated["name"] == "node"  # the trainer step of the Trainer's runtimes
    template: dict[str, Any] = replicated["template"]["spec"]["template"]
    return template


def coordinator_service(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (service,) = [
        o
        for o in by_kind(objects, "Service")
        if o["metadata"]["labels"]["app.kubernetes.io/component"] == "feeder-coordinator"
    ]
    return service


def test_training_is_off_by_default(helm: str) -> None:
    assert by_kind(template(helm), "TrainJob") == []
    assert by_kind(template(helm, "--set", "training.enabled=false"), "TrainJob") == []


@pytest.mark.parametrize(
    ("sets", "scheme"),
    [
        ([], "grpc+tls"),
        (["feeder.tls.enabled=false"], "grpc"),
        (["feeder.name=feed-b", "feeder.coordinatorPort=9000"], "grpc+tls"),
    ],
    ids=["tls", "no-tls", "renamed"],
)
def test_the_endpoint_is_the_coordinator_services_dns_name_and_port(
    helm: str, sets: list[str], scheme: str
) -> None:
    objects = template(helm, *ON, *[a for s in sets for a in ("--set", s)])
    service = coordinator_service(objects)
    (flight,) = [p for p in service["spec"]["ports"] if p["name"] == "flight"]
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    env = env_of(the_trainjob(objects))
    assert env["ICEFEED_ENDPOINT"]["value"] == f"{scheme}://{name}.{namespace}.svc:{flight['port']}"
    assert env["ICEFEED_JOB"]["value"] == "train"


def test_training_pods_and_data_nodes_know_their_kubernetes_node_for_locality(
    helm: str,
) -> None:
    objects = template(helm, *ON)
    host = {"valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    assert env_of(the_trainjob(objects))["ICEFEED_HOST"] == {"name": "ICEFEED_HOST", **host}
    (app,) = by_kind(objects, "SparkApplication")
    executor = app["spec"]["executor"]["template"]["spec"]["containers"][0]
    assert {"name": "ICEFEED_HOST", **host} in executor["env"]


def test_the_command_passes_the_endpoint_to_the_training_script(helm: str) -> None:
    # FeederDataset takes the endpoint as an argument and reads no ICEFEED_ENDPOINT:
    # the command hands it on; Kubernetes expands $(VAR) from the container's env.
    trainer = the_trainjob(template(helm, *ON))["spec"]["trainer"]
    command = trainer["command"]
    assert command[command.index("--endpoint") + 1] == "$(ICEFEED_ENDPOINT)"
    assert command[command.index("--job") + 1] == "$(ICEFEED_JOB)"
    assert {"ICEFEED_ENDPOINT", "ICEFEED_JOB"} <= set(env_of({"spec": {"trainer": trainer}}))


def test_the_token_comes_from_the_chart_secret_never_inline(helm: str) -> None:
    token = "s3cr3t-trainer-token-value"
    args = (*ON, "--set", f"feeder.token.value={token}")
    objects = template(helm, *args)
    (secret,) = by_kind(objects, "Secret")
    ref = env_of(the_trainjob(objects))["ICEFEED_TOKEN"]
    assert "value" not in ref
    assert ref["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": "token"}
    trainjob_text = template_text(helm, *args, "--show-only", "templates/trainjob.yaml")
    assert "kind: TrainJob" in trainjob_text
    assert token not in trainjob_text
    assert base64.b64encode(token.encode()).decode() not in trainjob_text
    existing = the_trainjob(template(helm, *ON, "--set", "feeder.token.existingSecret=mine"))
    assert env_of(existing)["ICEFEED_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "mine"


def test_affinity_prefers_the_nodes_of_the_feeders_executors(helm: str) -> None:
    objects = template(helm, *ON, "--set", "feeder.name=feed-b")
    (app,) = by_kind(objects, "SparkApplication")
    (datanodes,) = [o for o in by_kind(objects, "Service") if o["spec"].get("clusterIP") == "None"]
    affinity = pod_patch(the_trainjob(objects))["spec"]["affinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in affinity["podAffinity"]
    (term,) = affinity["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    selected = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
    # the labels the Spark operator puts on the SparkApplication's executor pods,
    # the same the data nodes' headless Service selects them by
    assert selected == {"sparkoperator.k8s.io/app-name": app["metadata"]["name"]} | {
        "spark-role": "executor"
    }
    assert selected == datanodes["spec"]["selector"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


def test_training_pods_carry_the_labels_the_network_policy_admits(helm: str) -> None:
    objects = template(helm, *ON, "--set", "networkPolicy.clientLabels.team=ml")
    (policy,) = by_kind(objects, "NetworkPolicy")
    admitted = [
        source["podSelector"]["matchLabels"]
        for rule in policy["spec"]["ingress"]
        for source in rule.get("from", [])
        if "podSelector" in source and "namespaceSelector" not in source
    ]
    labels = pod_patch(the_trainjob(objects))["metadata"]["labels"]
    assert {"icefeed.io/feeder-client": "true", "team": "ml"} in admitted
    assert labels == {"icefeed.io/feeder-client": "true", "team": "ml"}


def test_with_tls_the_trainer_mounts_the_ca_of_the_feeders_secret(helm: str) -> None:
    spec = pod_patch(the_trainjob(template(helm, *ON, "--set", "feeder.tls.existingSecret=ml")))
    (volume,) = spec["spec"]["volumes"]
    assert volume["secret"] == {"secretName": "ml", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    (container,) = spec["spec"]["containers"]
    assert container["name"] == "node"
    assert container["volumeMounts"] == [
        {"name": volume["name"], "mountPath": "/etc/icefeed/ca", "readOnly": True}
    ]
    off = pod_patch(the_trainjob(template(helm, *ON, "--set", "feeder.tls.enabled=false")))
    assert "volumes" not in off["spec"]
    assert "volumeMounts" not in off["spec"]["containers"][0]


@pytest.mark.parametrize("sets", [[], ["feeder.tls.enabled=false"]], ids=["tls", "no-tls"])
def test_every_rendered_object_validates_with_training_on(helm: str, sets: list[str]) -> None:
    objects = template(helm, *ON, *[a for s in sets for a in ("--set", s)])
    for obj in objects:
        if obj["kind"] in {"ServiceMonitor", "SparkApplication"}:
            continue  # no offline schema / the operator CRDs: test_helm checks those
        assert validate(obj) == [], f"{obj['kind']} {obj['metadata']['name']}"


def test_the_trainjob_is_validated_against_the_trainers_python_models_not_a_crd(
    helm: str,
) -> None:
    job = the_trainjob(template(helm, *ON))
    assert job["apiVersion"] == API_VERSION
    assert trainjob_problems(job) == []

    misspelt = copy.deepcopy(job)
    misspelt["spec"]["trainer"]["numNode"] = misspelt["spec"]["trainer"].pop("numNodes")
    (problem,) = validate(misspelt)
    assert (problem.path, problem.check) == ("spec.trainer.numNode", Check.UNKNOWN_FIELD)
    assert "numNodes" in problem.hint

    deep = copy.deepcopy(job)
    pod_patch(deep)["spec"]["affinity"]["podAfinity"] = pod_patch(deep)["spec"]["affinity"].pop(
        "podAffinity"
    )
    checks = {p.check for p in validate(deep)}
    assert checks == {Check.UNKNOWN_FIELD, Check.KUBERNETES}  # models and Kubernetes' schema

    wrong_type = copy.deepcopy(job)
    wrong_type["spec"]["trainer"]["numNodes"] = "two"
    (problem,) = validate(wrong_type)
    assert (problem.path, problem.check) == ("numNodes", Check.SCHEMA)

    no_runtime = copy.deepcopy(job)
    del no_runtime["spec"]["runtimeRef"]
    assert [p.check for p in validate(no_runtime)] == [Check.SCHEMA]

    bad_env = copy.deepcopy(job)
    bad_env["spec"]["trainer"]["env"][0]["valueFrom"] = {"secretKeyRef": {"key": 1}}
    assert Check.KUBERNETES in {p.check for p in validate(bad_env)}


def test_the_training_pods_meet_pod_security_restricted(helm: str) -> None:
    pod = pod_patch(the_trainjob(template(helm, *ON)))
    assert [str(v) for v in pod_violations(pod["metadata"], pod["spec"], Level.RESTRICTED)] == []


LOCAL = ("--set", "feeder.localReads.enabled=true")


def test_local_reads_share_one_node_local_folder_between_executors_and_trainers(
    helm: str,
) -> None:
    objects = template(helm, *ON, *LOCAL, "--set", "feeder.localReads.mountPath=/run/feed")
    (app,) = by_kind(objects, "SparkApplication")
    args = app["spec"]["arguments"]
    assert args[args.index("--local-dir") + 1] == "/run/feed"
    executor = app["spec"]["executor"]["template"]["spec"]
    pod = pod_patch(the_trainjob(objects))["spec"]
    folder = {"hostPath": {"path": "/var/run/icefeed", "type": "Directory"}}
    for spec in (executor, pod):
        (volume,) = [v for v in spec["volumes"] if v["name"] == "icefeed-local"]
        assert {k: v for k, v in volume.items() if k != "name"} == folder
        (mount,) = [
            m for c in spec["containers"] for m in c["volumeMounts"] if m["name"] == "icefeed-local"
        ]
        assert mount["mountPath"] == "/run/feed"
    # the sockets are 0660, group of the executors: the trainers join that group
    executor_group = app["spec"]["executor"]["template"]["spec"]["securityContext"]["runAsGroup"]
    assert pod["securityContext"]["supplementalGroups"] == [executor_group]
    for obj in objects:  # the SparkApplication's schema is the operator's CRD: below
        if obj["kind"] not in {"ServiceMonitor", "SparkApplication"}:
            assert validate(obj) == [], f"{obj['kind']} {obj['metadata']['name']}"


def test_the_feeder_with_local_reads_validates(helm: str, crds: Path) -> None:
    (app,) = by_kind(template(helm, *ON, *LOCAL), "SparkApplication")
    assert validate(app) == []


def test_local_reads_are_off_by_default_and_need_a_host_path(helm: str) -> None:
    objects = template(helm, *ON)
    (app,) = by_kind(objects, "SparkApplication")
    assert "--local-dir" not in app["spec"]["arguments"]
    assert "supplementalGroups" not in pod_patch(the_trainjob(objects))["spec"]["securityContext"]
    result = run_helm(
        helm, "template", "rel", str(CHART), *ON, *LOCAL, "--set", "feeder.localReads.hostPath="
    )
    assert result.returncode != 0 and "feeder.localReads.hostPath" in result.stderr


def test_pod_security_baseline_refuses_the_local_reads_folder_only(helm: str) -> None:
    pod = pod_patch(the_trainjob(template(helm, *ON, *LOCAL)))
    index = [v["name"] for v in pod["spec"]["volumes"]].index("icefeed-local")
    assert [str(v) for v in pod_violations(pod["metadata"], pod["spec"], Level.BASELINE)] == [
        f"spec.volumes[{index}].hostPath: hostPath volumes are forbidden (baseline)"
    ]


def test_icefeed_sparkapp_validate_checks_a_rendered_trainjob(
    helm: str, tmp_path: Path, sparkapp_cli: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    text = template_text(helm, *ON, "--show-only", "templates/trainjob.yaml")
    good = tmp_path / "trainjob.yaml"
    good.write_text(text)
    bad = tmp_path / "misspelt.yaml"
    bad.write_text(text.replace("numProcPerNode:", "numProcsPerNode:"))
    assert sparkapp_cli("validate", str(good)) == 0
    assert sparkapp_cli("validate", str(bad)) != 0
    out = capsys.readouterr().out
    assert "TrainJob icefeed-train: ok" in out
    assert "spec.trainer.numProcsPerNode: unknown field" in out


def test_the_docs_training_values_render_a_valid_trainjob(helm: str, tmp_path: Path) -> None:
    from tests.sparkapps.test_docs import yaml_blocks

    (values,) = [b for b in yaml_blocks() if isinstance(b, dict) and "training" in b]
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    job = the_trainjob(template(helm, "-f", str(path)))
    assert job["spec"]["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "1"
    assert validate(job) == []


def test_helm_lint_passes_with_training_on(helm: str) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), *ON)
    assert result.returncode == 0, result.stdout + result.stderr
