"""docs/kubernetes.md: every YAML example is valid, and it agrees with the chart."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from sparkapps.manifests import load_manifest
from sparkapps.paths import chart_dir, repo_root
from sparkapps.rendering import chart_defaults
from sparkapps.validation import validate, validate_core_object
from tests.sparkapps.pod_security import Level, pod_violations

pytestmark = pytest.mark.k8s

DOC = repo_root() / "docs" / "kubernetes.md"


def yaml_blocks() -> list[Any]:
    text = DOC.read_text()
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.S)]


def pytorch_jobs() -> list[dict[str, Any]]:
    return [b for b in yaml_blocks() if isinstance(b, dict) and b.get("kind") == "PyTorchJob"]


def test_the_doc_has_a_pytorchjob_and_a_values_example() -> None:
    assert len(pytorch_jobs()) == 1
    assert any(isinstance(b, dict) and "kind" not in b for b in yaml_blocks())


def test_every_pod_template_of_the_pytorchjob_is_a_valid_pod() -> None:
    (job,) = pytorch_jobs()
    assert job["apiVersion"] == "kubeflow.org/v1"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master", "Worker"}
    for role, replica in replicas.items():
        pod = {"apiVersion": "v1", "kind": "Pod", **replica["template"]}
        problems = validate_core_object(pod, path=f"spec.pytorchReplicaSpecs.{role}.template")
        assert problems == [], problems


def test_the_training_pods_match_what_the_chart_deploys() -> None:
    values = chart_defaults()
    feeder = values["feeder"]
    scheme = "grpc+tls" if feeder["tls"]["enabled"] else "grpc"
    endpoint = f"{scheme}://{feeder['name']}-coordinator.ml.svc:{feeder['coordinatorPort']}"
    (job,) = pytorch_jobs()
    for replica in job["spec"]["pytorchReplicaSpecs"].values():
        template = replica["template"]
        labels = template["metadata"]["labels"]
        assert values["networkPolicy"]["clientLabels"].items() <= labels.items()
        term = template["spec"]["affinity"]["podAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ][0]["podAffinityTerm"]
        assert term["labelSelector"]["matchLabels"] == {
            "sparkoperator.k8s.io/app-name": feeder["name"],
            "spark-role": "executor",
        }
        env = {e["name"]: e for e in template["spec"]["containers"][0]["env"]}
        assert env["ICEFEED_ENDPOINT"]["value"] == endpoint
        assert env["ICEFEED_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": feeder["token"]["secretName"],
            "key": "token",
        }
        (ca,) = template["spec"]["volumes"]
        assert ca["secret"]["secretName"] == feeder["tls"]["existingSecret"]
        assert [item["key"] for item in ca["secret"]["items"]] == ["ca.crt"]


def test_the_training_pods_meet_pod_security_restricted() -> None:
    (job,) = pytorch_jobs()
    for role, replica in job["spec"]["pytorchReplicaSpecs"].items():
        template = replica["template"]
        problems = pod_violations(template["metadata"], template["spec"], Level.RESTRICTED)
        assert problems == [], (role, [str(p) for p in problems])


def test_the_values_example_passes_the_chart_schema() -> None:
    import jsonschema

    from jobs.clean.spec import CleanSpec

    schema = json.loads((chart_dir() / "values.schema.json").read_text())
    examples = [b for b in yaml_blocks() if isinstance(b, dict) and "kind" not in b]
    assert len(examples) == 3  # the feeder's values, a clean job with an inline spec, training
    for values in examples:
        merged = {**chart_defaults()}
        for key, value in values.items():
            merged[key] = {**merged.get(key, {}), **value}
        jsonschema.Draft7Validator(schema).validate(merged)
        for job in values.get("clean", {}).get("jobs", []):
            CleanSpec.from_dict(job["specInline"])  # the inline spec is a valid CleanSpec


def test_the_spark_manifests_the_doc_shows_or_names_validate(crds: None) -> None:
    """The shipped SparkApplications the doc names by path (at least two), and any it
    shows inline (none today: its YAML blocks are chart values and a PyTorchJob)."""
    inline = [
        b
        for b in yaml_blocks()
        if isinstance(b, dict) and str(b.get("apiVersion", "")).startswith("sparkoperator")
    ]
    named = sorted(set(re.findall(r"sparkapps/[\w.-]+\.yaml", DOC.read_text())))
    manifests = inline + [load_manifest(repo_root() / path) for path in named]
    assert len(named) >= 2, named  # the clean job and its schedule, at least
    for manifest in manifests:
        assert validate(manifest) == [], manifest["metadata"]["name"]
