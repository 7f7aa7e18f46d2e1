"""The Helm chart helm/icefeed, rendered by the real helm binary (v3.17.1).

helm comes from tests/support/install_helm.py (``make tools``); the fixture runs
that installer if the binary is missing.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from sparkapps.manifests import load_manifest
from sparkapps.paths import MANIFEST_DIR, chart_dir
from sparkapps.validation import validate

pytestmark = pytest.mark.k8s

CHART = chart_dir()
PRODUCTION = CHART / "values-production.yaml"
SPARK_KINDS = {"SparkApplication", "ScheduledSparkApplication"}
#: Kinds of CRDs that are neither Spark operator nor core Kubernetes (no offline schema).
THIRD_PARTY_KINDS = {"ServiceMonitor"}


@pytest.fixture(scope="module")
def helm() -> str:
    bin_dir = Path(sys.executable).parent
    binary = bin_dir / "helm"
    if not binary.exists():
        from tests.support import install_helm

        assert install_helm.main([str(bin_dir)]) == 0
    assert shutil.which(str(binary)), f"no helm at {binary}"
    return str(binary)


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)


def template(helm: str, *args: str) -> list[dict[str, Any]]:
    result = run_helm(helm, "template", "rel", str(CHART), "--namespace", "ml", *args)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def template_text(helm: str, *args: str) -> str:
    result = run_helm(helm, "template", "rel", str(CHART), "--namespace", "ml", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def by_kind(objects: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_helm_is_the_pinned_version(helm: str) -> None:
    result = run_helm(helm, "version", "--short")
    assert result.stdout.startswith("v3.17.1"), result.stdout


@pytest.mark.parametrize("values", [None, PRODUCTION], ids=["default", "production"])
def test_helm_lint_passes(helm: str, values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)] + (["-f", str(values)] if values else [])
    result = run_helm(helm, *args)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", [None, PRODUCTION], ids=["default", "production"])
def test_every_rendered_object_validates(helm: str, crds: None, values: Path | None) -> None:
    objects = template(helm, *(["-f", str(values)] if values else []))
    kinds = {o["kind"] for o in objects}
    assert {"SparkApplication", "Service", "ServiceAccount", "Role", "RoleBinding"} <= kinds
    assert "NetworkPolicy" in kinds
    for obj in objects:
        if obj["kind"] in THIRD_PARTY_KINDS:
            continue
        problems = validate(obj)  # CRD layers for Spark kinds, kubernetes-validate otherwise
        assert problems == [], f"{obj['kind']} {obj['metadata']['name']}: {problems}"
    if values is PRODUCTION:
        assert kinds >= {"ScheduledSparkApplication", "ServiceMonitor"}
        assert "Secret" not in kinds  # existingSecret: the chart creates none


def test_the_chart_renders_the_same_feeder_as_the_shipped_manifest(helm: str) -> None:
    (rendered,) = by_kind(template(helm), "SparkApplication")
    shipped = load_manifest(MANIFEST_DIR / "feeder.yaml")
    for app in (rendered, shipped):
        for role in ("driver", "executor"):
            app["spec"][role].pop("labels")
    assert rendered["spec"] == shipped["spec"]
    assert rendered["metadata"]["name"] == shipped["metadata"]["name"]


def test_row_copy_off_reaches_the_feeder_arguments(helm: str) -> None:
    (default,) = by_kind(template(helm), "SparkApplication")
    (off,) = by_kind(template(helm, "--set", "feeder.rowCopy=false"), "SparkApplication")
    assert "--no-row-copy" not in default["spec"]["arguments"]
    assert off["spec"]["arguments"][-1] == "--no-row-copy"


def test_the_feeder_with_row_copy_off_validates(helm: str, crds: None) -> None:
    (off,) = by_kind(template(helm, "--set", "feeder.rowCopy=false"), "SparkApplication")
    assert validate(off) == []


def test_services_select_the_operators_driver_and_executor_pods(helm: str) -> None:
    objects = template(helm)
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    coordinator = services["icefeed-feeder-coordinator"]
    assert coordinator["spec"]["selector"] == {
        "sparkoperator.k8s.io/app-name": "icefeed-feeder",
        "spark-role": "driver",
    }
    assert {p["name"]: p["port"] for p in coordinator["spec"]["ports"]}["flight"] == 8815
    headless = services["icefeed-feeder-datanodes"]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"]["spark-role"] == "executor"


def test_the_driver_role_is_least_privilege(helm: str) -> None:
    (role,) = by_kind(template(helm), "Role")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert resources == {"pods", "services", "configmaps", "persistentvolumeclaims"}
    for rule in role["rules"]:
        assert rule["apiGroups"] == [""]
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
    assert not by_kind(template(helm), "ClusterRole")


def test_only_labelled_clients_reach_the_flight_ports(helm: str) -> None:
    (policy,) = by_kind(
        template(helm, "--set", "networkPolicy.clientLabels.team=ml"), "NetworkPolicy"
    )
    client_rule = next(r for r in policy["spec"]["ingress"] if "ports" in r and "from" in r)
    labels = client_rule["from"][0]["podSelector"]["matchLabels"]
    assert labels == {"icefeed.io/feeder-client": "true", "team": "ml"}
    assert sorted(p["port"] for p in client_rule["ports"]) == [8815, 8816]


def test_metrics_scrape_annotations_are_on_the_feeder_pods(helm: str) -> None:
    (app,) = by_kind(template(helm), "SparkApplication")
    for role in ("driver", "executor"):
        annotations = app["spec"][role]["template"]["metadata"]["annotations"]
        assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "9108"}


def test_the_token_never_appears_in_plain_text(helm: str) -> None:
    token = "tok-3f9c1d-DO-NOT-LEAK"
    objects = template(helm, "--set", f"feeder.token.value={token}")
    text = yaml.safe_dump_all(objects)
    assert token not in text
    encoded = base64.b64encode(token.encode()).decode()
    holders = [o for o in objects if encoded in yaml.safe_dump(o)]
    assert [(o["kind"], o["metadata"]["name"]) for o in holders] == [
        ("Secret", "icefeed-feeder-token")
    ]


def test_with_existing_secrets_no_secret_value_is_rendered(helm: str) -> None:
    objects = template(helm, "-f", str(PRODUCTION))
    assert not by_kind(objects, "Secret")
    (app,) = by_kind(objects, "SparkApplication")
    env = app["spec"]["driver"]["template"]["spec"]["containers"][0]["env"]
    assert env == [
        {
            "name": "ICEFEED_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "icefeed-feeder-token-prod", "key": "token"}},
        }
    ]
    for obj in objects:
        for container_env in _all_env(obj):
            assert "value" not in container_env or "TOKEN" not in container_env["name"]


def _all_env(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "env" and isinstance(value, list):
                found += value
            else:
                found += _all_env(value)
    elif isinstance(node, list):
        for item in node:
            found += _all_env(item)
    return found


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["image.repository="], "image.repository"),
        (["feeder.nodes=-1"], "feeder.nodes"),
        (["feeder.nodes=0"], "feeder.nodes"),
        (["feeder.coordinatorPort=70000"], "feeder.coordinatorPort"),
        (["feeder.executor.memory=lots"], "feeder.executor.memory"),
        (["feeder.token.existingSecret=mine", "feeder.token.value=plain"], "feeder.token.value"),
        (["feeder.naem=x"], "naem"),
        (["feeder.rowCopy=maybe"], "feeder.rowCopy"),
    ],
)
def test_bad_values_fail_with_a_clear_message(helm: str, sets: list[str], message: str) -> None:
    args = [a for s in sets for a in ("--set", s)]
    result = run_helm(helm, "template", "rel", str(CHART), *args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    if "plain" in sets[-1]:
        assert "plain" not in result.stderr.replace("plain values", "")


def test_notes_print_the_coordinator_endpoint(helm: str, tmp_path: Path) -> None:
    # `helm template` does not render NOTES.txt: render it through a copy of the
    # chart where it is wrapped in a ConfigMap.
    copy = tmp_path / "icefeed"
    shutil.copytree(CHART, copy)
    notes = (copy / "templates" / "NOTES.txt").read_text()
    wrapper = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n"
    wrapper += "".join(f"    {line}\n" for line in notes.splitlines())
    (copy / "templates" / "zz-notes.yaml").write_text(wrapper)
    result = run_helm(helm, "template", "rel", str(copy), "--namespace", "ml")
    assert result.returncode == 0, result.stderr
    (cm,) = [d for d in yaml.safe_load_all(result.stdout) if d and d["metadata"]["name"] == "notes"]
    text = cm["data"]["notes"]
    assert "grpc://icefeed-feeder-coordinator.ml.svc:8815" in text
    assert "icefeed.io/feeder-client" in text


def test_the_helm_installer_is_idempotent(helm: str) -> None:
    from tests.support import install_helm

    bin_dir = Path(helm).parent
    assert install_helm.installed(bin_dir)
    before = (bin_dir / "helm").stat().st_mtime_ns
    assert install_helm.main([str(bin_dir)]) == 0
    assert (bin_dir / "helm").stat().st_mtime_ns == before
    assert (bin_dir / "kubectl").exists()


def test_the_chart_renders_the_same_nightly_clean_job_as_the_shipped_manifest(helm: str) -> None:
    shipped = load_manifest(MANIFEST_DIR / "clean-flights-nightly.yaml")
    job = [
        "clean.enabled=true",
        "clean.jobs[0].name=clean-flights-nightly",
        "clean.jobs[0].schedule=0 2 * * *",
        "clean.jobs[0].spec=/opt/icefeed/jobs/specs/flights.yaml",
        "clean.jobs[0].executors=2",
    ]
    objects = template(helm, *[a for s in job for a in ("--set", s)])
    (rendered,) = by_kind(objects, "ScheduledSparkApplication")
    assert rendered["spec"] == shipped["spec"]
