"""The Helm chart helm/icefeed, rendered by the real helm binary (v3.17.1).

helm comes from tests/support/install_helm.py (``make tools``); the fixture runs
that installer if the binary is missing.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from sparkapps.manifests import load_manifest
from sparkapps.paths import MANIFEST_DIR, chart_dir, shipped_manifests
from sparkapps.validation import validate
from tests.sparkapps.pod_security import Level, RenderedPod, pod_violations, pods_of

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


def assert_valid(objects: Sequence[dict[str, Any]], kinds: set[str]) -> None:
    """Validate the objects of ``kinds`` (CRD layers for Spark kinds, so those need the
    operator's CRDs; kubernetes-validate for the core kinds, which do not)."""
    for obj in objects:
        if obj["kind"] in kinds:
            problems = validate(obj)
            assert problems == [], f"{obj['kind']} {obj['metadata']['name']}: {problems}"


def core_kinds(objects: Sequence[dict[str, Any]]) -> set[str]:
    return {o["kind"] for o in objects} - SPARK_KINDS - THIRD_PARTY_KINDS


@pytest.mark.parametrize("values", [None, PRODUCTION], ids=["default", "production"])
def test_every_rendered_core_object_validates(helm: str, values: Path | None) -> None:
    objects = template(helm, *(["-f", str(values)] if values else []))
    kinds = {o["kind"] for o in objects}
    assert {"SparkApplication", "Service", "ServiceAccount", "Role", "RoleBinding"} <= kinds
    assert "NetworkPolicy" in kinds
    assert_valid(objects, core_kinds(objects))
    if values is PRODUCTION:
        assert kinds >= {"ScheduledSparkApplication", "ServiceMonitor"}
        assert "Secret" not in kinds  # existingSecret: the chart creates none


@pytest.mark.parametrize("values", [None, PRODUCTION], ids=["default", "production"])
def test_every_rendered_spark_application_validates(
    helm: str, crds: None, values: Path | None
) -> None:
    assert_valid(template(helm, *(["-f", str(values)] if values else [])), SPARK_KINDS)


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
    assert "--no-row-copy" in off["spec"]["arguments"]


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
        (["feeder.cache.type=nfs"], "feeder.cache.type"),
        (["feeder.cacheHostPath=/mnt/nvme"], "cacheHostPath"),  # the old key: now feeder.cache
        (["feeder.cache.sizeLimit=lots"], "feeder.cache.sizeLimit"),
        (["serviceAccount.executorName=Not_A_Name"], "serviceAccount.executorName"),
    ],
)
def test_bad_values_fail_with_a_clear_message(helm: str, sets: list[str], message: str) -> None:
    args = [a for s in sets for a in ("--set", s)]
    result = run_helm(helm, "template", "rel", str(CHART), *args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    if "plain" in sets[-1]:
        assert "plain" not in result.stderr.replace("plain values", "")


@pytest.mark.parametrize(
    ("sets", "endpoint"),
    [
        ([], "grpc+tls://icefeed-feeder-coordinator.ml.svc:8815"),
        (["feeder.tls.enabled=false"], "grpc://icefeed-feeder-coordinator.ml.svc:8815"),
    ],
    ids=["tls", "no-tls"],
)
def test_notes_print_the_coordinator_endpoint(
    helm: str, tmp_path: Path, sets: list[str], endpoint: str
) -> None:
    # `helm template` does not render NOTES.txt: render it through a copy of the
    # chart where it is wrapped in a ConfigMap.
    copy = tmp_path / "icefeed"
    shutil.copytree(CHART, copy)
    notes = (copy / "templates" / "NOTES.txt").read_text()
    wrapper = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n"
    wrapper += "".join(f"    {line}\n" for line in notes.splitlines())
    (copy / "templates" / "zz-notes.yaml").write_text(wrapper)
    args = [a for s in sets for a in ("--set", s)]
    result = run_helm(helm, "template", "rel", str(copy), "--namespace", "ml", *args)
    assert result.returncode == 0, result.stderr
    (cm,) = [d for d in yaml.safe_load_all(result.stdout) if d and d["metadata"]["name"] == "notes"]
    text = cm["data"]["notes"]
    assert f"  {endpoint}\n" in text
    assert "icefeed.io/feeder-client" in text
    assert ("clear text" in text) == (not endpoint.startswith("grpc+tls"))


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


# --- Pod security, the cache volume, service accounts, network policy, TLS ---

NIGHTLY_JOB = [
    "clean.enabled=true",
    "clean.jobs[0].name=clean-flights-nightly",
    "clean.jobs[0].schedule=0 2 * * *",
    "clean.jobs[0].spec=/opt/icefeed/jobs/specs/flights.yaml",
]
#: A CleanSpec carried in the values (a ConfigMap mounted into the driver).
INLINE_SPEC = {
    "source": {"path": "s3://raw/events/*.csv"},
    "table": "events.clean",
    "columns": {"id": {"type": "long", "required": True}, "name": {"type": "string"}},
    "max_reject_fraction": 0.05,
    "severity": {"cast": "fail"},
}
INLINE_JOB = [
    "--set",
    "clean.enabled=true",
    "--set-json",
    "clean.jobs="
    + json.dumps([{"name": "clean-events", "schedule": "0 3 * * *", "specInline": INLINE_SPEC}]),
]
#: Option combinations whose every pod must meet Pod Security "restricted".
RESTRICTED_OPTIONS: dict[str, list[str]] = {
    "default": [],
    "production": ["-f", str(PRODUCTION)],
    "clean-jobs": [a for s in NIGHTLY_JOB for a in ("--set", s)],
    "clean-inline-spec": INLINE_JOB,
    "no-tls-no-metrics": ["--set", "feeder.tls.enabled=false", "--set", "metrics.enabled=false"],
    "tmpfs-cache": ["--set", "feeder.cache.medium=Memory", "--set", "feeder.cache.sizeLimit=8Gi"],
    "no-network-policy": ["--set", "networkPolicy.enabled=false"],
    "writable-root": ["--set", "containerSecurityContext.readOnlyRootFilesystem=false"],
}


def rendered_pods(objects: Sequence[dict[str, Any]]) -> list[RenderedPod]:
    return [pod for obj in objects for pod in pods_of(obj)]


def violations(pod: RenderedPod, level: Level) -> list[str]:
    return [str(v) for v in pod_violations(pod.metadata, pod.spec, level)]


def the_pod(objects: Sequence[dict[str, Any]], source_suffix: str) -> RenderedPod:
    (pod,) = [p for p in rendered_pods(objects) if p.source.endswith(source_suffix)]
    return pod


def main_container(pod: RenderedPod) -> dict[str, Any]:
    container: dict[str, Any] = pod.spec["containers"][0]
    return container


@pytest.mark.parametrize("option", sorted(RESTRICTED_OPTIONS))
def test_every_rendered_pod_meets_pod_security_restricted(helm: str, option: str) -> None:
    objects = template(helm, *RESTRICTED_OPTIONS[option])
    pods = rendered_pods(objects)
    spark_apps = [o for o in objects if o["kind"] in SPARK_KINDS]
    assert len(pods) == 2 * len(spark_apps) >= 2  # a driver and an executor pod each
    for pod in pods:
        assert violations(pod, Level.RESTRICTED) == [], pod.source


@pytest.mark.parametrize("option", sorted(RESTRICTED_OPTIONS))
def test_the_spark_applications_of_every_restricted_option_validate(
    helm: str, crds: None, option: str
) -> None:
    assert_valid(template(helm, *RESTRICTED_OPTIONS[option]), SPARK_KINDS)


@pytest.mark.parametrize("path", shipped_manifests(), ids=lambda p: p.name)
def test_every_shipped_manifest_pod_meets_pod_security_restricted(path: Path) -> None:
    pods = pods_of(load_manifest(path))
    assert len(pods) == 2
    for pod in pods:
        assert violations(pod, Level.RESTRICTED) == [], pod.source
        context = main_container(pod)["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert pod.spec["securityContext"]["runAsUser"] == 185
        mounts = {m["mountPath"] for m in main_container(pod)["volumeMounts"]}
        assert {"/tmp", "/opt/spark/work-dir"} <= mounts


def test_pods_run_as_the_images_spark_user() -> None:
    dockerfile = (CHART.parent.parent / "Dockerfile").read_text()
    assert dockerfile.rstrip().splitlines()[-1] == "USER spark"
    assert "apache/spark:" in dockerfile  # whose `spark` user is uid/gid 185
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 185
    assert values["podSecurityContext"]["runAsGroup"] == 185


def test_the_cache_is_an_empty_dir_with_a_size_limit_mounted_as_spark_local_dir_1(
    helm: str,
) -> None:
    executor = the_pod(template(helm, "--set", "feeder.cache.sizeLimit=750Gi"), "executor")
    (cache,) = [v for v in executor.spec["volumes"] if v["name"] == "spark-local-dir-1"]
    assert cache == {"name": "spark-local-dir-1", "emptyDir": {"sizeLimit": "750Gi"}}
    mounts = {m["name"]: m["mountPath"] for m in main_container(executor)["volumeMounts"]}
    assert mounts["spark-local-dir-1"] == "/var/data/spark-local-dir-1"


def test_the_empty_dir_size_limit_caps_what_each_data_node_caches(helm: str) -> None:
    (app,) = by_kind(template(helm, "--set", "feeder.cache.sizeLimit=750Gi"), "SparkApplication")
    args = app["spec"]["arguments"]
    assert args[args.index("--cache-capacity") + 1] == "750Gi"
    host = ["--set", "feeder.cache.type=hostPath"]
    (on_host,) = by_kind(template(helm, *host), "SparkApplication")
    assert "--cache-capacity" not in on_host["spec"]["arguments"]  # its free disk is real


def test_a_feeder_with_a_host_path_cache_validates(helm: str, crds: None) -> None:
    (app,) = by_kind(template(helm, "--set", "feeder.cache.type=hostPath"), "SparkApplication")
    assert validate(app) == []


def test_a_host_path_cache_is_an_option_and_pod_security_baseline_refuses_it(helm: str) -> None:
    objects = template(helm, "--set", "feeder.cache.type=hostPath")
    executor = the_pod(objects, "executor")
    (cache,) = [v for v in executor.spec["volumes"] if v["name"] == "spark-local-dir-1"]
    assert cache["hostPath"] == {"path": "/mnt/nvme/icefeed", "type": "Directory"}
    index = executor.spec["volumes"].index(cache)
    assert violations(executor, Level.BASELINE) == [
        f"spec.volumes[{index}].hostPath: hostPath volumes are forbidden (baseline)"
    ]
    assert violations(the_pod(objects, "driver"), Level.RESTRICTED) == []


def test_executors_have_their_own_service_account_without_api_access(helm: str) -> None:
    objects = template(helm, *[a for s in NIGHTLY_JOB for a in ("--set", s)])
    accounts = {a["metadata"]["name"]: a for a in by_kind(objects, "ServiceAccount")}
    executor_account = accounts["icefeed-spark-executor"]
    assert executor_account["automountServiceAccountToken"] is False
    (binding,) = by_kind(objects, "RoleBinding")
    assert [s["name"] for s in binding["subjects"]] == ["icefeed-spark"]
    (feeder,) = by_kind(objects, "SparkApplication")
    (nightly,) = by_kind(objects, "ScheduledSparkApplication")
    for app in (feeder["spec"], nightly["spec"]["template"]):
        assert app["executor"]["serviceAccount"] == "icefeed-spark-executor"
        assert app["driver"]["serviceAccount"] == "icefeed-spark"
    assert feeder["spec"]["executor"]["template"]["spec"]["automountServiceAccountToken"] is False


def ingress_rule_for_port(policy: dict[str, Any], port: int) -> dict[str, Any]:
    rules = policy["spec"]["ingress"]
    (rule,) = [r for r in rules if port in [p["port"] for p in r.get("ports", [])]]
    return rule


def test_every_ingress_rule_names_its_sources(helm: str) -> None:
    (policy,) = by_kind(template(helm), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    for rule in policy["spec"]["ingress"]:
        assert rule.get("from"), rule
        for peer in rule["from"]:
            assert peer["podSelector"]["matchLabels"], peer


def test_the_metrics_port_admits_only_labelled_scrapers(helm: str) -> None:
    sets = [
        "networkPolicy.metricsScrapers.namespaceSelector.matchLabels.team=observability",
        "networkPolicy.metricsScrapers.podSelector.matchLabels.app=vmagent",
    ]
    (policy,) = by_kind(template(helm, *[a for s in sets for a in ("--set", s)]), "NetworkPolicy")
    rule = ingress_rule_for_port(policy, 9108)
    assert [p["port"] for p in rule["ports"]] == [9108]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "prometheus",
        "app": "vmagent",
    }
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring",
        "team": "observability",
    }
    (off,) = by_kind(template(helm, "--set", "metrics.enabled=false"), "NetworkPolicy")
    assert all(9108 not in [p["port"] for p in r.get("ports", [])] for r in off["spec"]["ingress"])


def test_metrics_scrapers_must_be_selected_by_a_label(helm: str) -> None:
    result = run_helm(
        helm,
        "template",
        "rel",
        str(CHART),
        "--set",
        "networkPolicy.metricsScrapers.podSelector.matchLabels=null",
    )
    assert result.returncode != 0
    assert "metricsScrapers" in result.stderr, result.stderr


def feeder_arguments(app: dict[str, Any]) -> argparse.Namespace:
    """Parse the feeder's arguments with the feeder's own parser (``launch.py feeder serve``)."""
    from feeder.cli import add_serve_arguments

    arguments = app["spec"]["arguments"]
    assert arguments[:2] == ["feeder", "serve"]
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_serve_arguments(parser)
    return parser.parse_args(arguments[2:])


def test_the_feeder_follows_its_table_only_when_asked(helm: str) -> None:
    (app,) = by_kind(template(helm), "SparkApplication")
    assert "--follow" not in app["spec"]["arguments"]
    assert feeder_arguments(app).follow_seconds is None
    (app,) = by_kind(template(helm, "--set", "feeder.followSeconds=600"), "SparkApplication")
    assert feeder_arguments(app).follow_seconds == 600.0
    for bad in ("-1", "0.5"):  # whole seconds: a cluster's catalog is not polled faster
        value = f"feeder.followSeconds={bad}"
        result = run_helm(helm, "template", "rel", str(CHART), "--set", value)
        assert result.returncode != 0 and "followSeconds" in result.stderr, bad


def test_locality_reaches_the_feeder_only_when_asked(helm: str) -> None:
    (app,) = by_kind(template(helm), "SparkApplication")
    assert feeder_arguments(app).locality is False
    (app,) = by_kind(template(helm, "--set", "feeder.locality=true"), "SparkApplication")
    assert feeder_arguments(app).locality is True
    result = run_helm(helm, "template", "rel", str(CHART), "--set", "feeder.locality=maybe")
    assert result.returncode != 0 and "locality" in result.stderr


def test_tls_mounts_the_certificate_in_driver_and_executors_and_the_feeder_uses_it(
    helm: str,
) -> None:
    objects = template(helm, "--set", "feeder.tls.existingSecret=ml-cert")
    (app,) = by_kind(objects, "SparkApplication")
    args = feeder_arguments(app)
    assert (args.tls_cert, args.tls_key) == ("/etc/icefeed/tls/tls.crt", "/etc/icefeed/tls/tls.key")
    for role in ("driver", "executor"):
        pod = the_pod(objects, role)
        (volume,) = [v for v in pod.spec["volumes"] if "secret" in v]
        assert volume["secret"]["secretName"] == "ml-cert"
        (mount,) = [m for m in main_container(pod)["volumeMounts"] if m["name"] == volume["name"]]
        assert mount == {"name": volume["name"], "mountPath": "/etc/icefeed/tls", "readOnly": True}
    (off,) = by_kind(template(helm, "--set", "feeder.tls.enabled=false"), "SparkApplication")
    assert feeder_arguments(off).tls_cert is None
    assert feeder_arguments(off).insecure  # the operator's choice, said out loud
    assert "secret" not in yaml.safe_dump(off["spec"]["executor"]["template"]["spec"]["volumes"])


def test_every_shipped_and_rendered_feeder_command_line_is_one_the_feeder_accepts(
    helm: str,
) -> None:
    apps = [load_manifest(MANIFEST_DIR / "feeder.yaml")]
    for option in RESTRICTED_OPTIONS.values():
        apps += by_kind(template(helm, *option), "SparkApplication")
    apps += by_kind(template(helm, "--set", "feeder.rowCopy=false"), "SparkApplication")
    for app in apps:
        args = feeder_arguments(app)
        assert args.host == "0.0.0.0"
        assert bool(args.tls_cert) != bool(args.insecure)  # TLS, or --insecure said out loud


def journal_of(app: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The driver's journal volume and its mount (None, None: no journal)."""
    spec = app["spec"]["driver"]["template"]["spec"]
    volume = next((v for v in spec["volumes"] if v["name"] == "journal"), None)
    (container,) = spec["containers"]
    mount = next((m for m in container["volumeMounts"] if m["name"] == "journal"), None)
    return volume, mount


def test_the_driver_restarts_on_failure_and_journals_to_a_volume(helm: str) -> None:
    objects = template(helm)
    (app,) = by_kind(objects, "SparkApplication")
    policy = app["spec"]["restartPolicy"]
    assert policy["type"] == "OnFailure" and policy["onFailureRetries"] > 0
    assert policy["onSubmissionFailureRetries"] > 0  # the operator requires it with OnFailure
    volume, mount = journal_of(app)
    assert volume == {
        "name": "journal",
        "persistentVolumeClaim": {"claimName": "icefeed-feeder-journal"},
    }
    assert mount == {"name": "journal", "mountPath": "/var/lib/icefeed/journal"}
    assert feeder_arguments(app).journal_dir == "/var/lib/icefeed/journal"
    (claim,) = by_kind(objects, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "icefeed-feeder-journal"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert validate(claim) == []
    assert violations(the_pod(objects, "driver"), Level.RESTRICTED) == []
    # the executors' cache is not the journal: a driver restart does not need it
    assert "journal" not in yaml.safe_dump(app["spec"]["executor"])


def test_the_journal_can_use_an_existing_claim_or_be_switched_off(helm: str) -> None:
    existing = template(helm, "--set", "feeder.journal.existingClaim=ml-journal")
    (app,) = by_kind(existing, "SparkApplication")
    assert journal_of(app)[0] == {
        "name": "journal",
        "persistentVolumeClaim": {"claimName": "ml-journal"},
    }
    assert by_kind(existing, "PersistentVolumeClaim") == []  # the chart creates none

    sized = template(
        helm, "--set", "feeder.journal.size=1Gi", "--set", "feeder.journal.storageClassName=fast"
    )
    (claim,) = by_kind(sized, "PersistentVolumeClaim")
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert claim["spec"]["storageClassName"] == "fast" and validate(claim) == []

    off = template(helm, "--set", "feeder.journal.enabled=false")
    (app,) = by_kind(off, "SparkApplication")
    assert journal_of(app) == (None, None)
    assert feeder_arguments(app).journal_dir is None
    assert by_kind(off, "PersistentVolumeClaim") == []


@pytest.mark.parametrize(
    "values",
    [[], ["feeder.journal.existingClaim=ml-journal"], ["feeder.journal.enabled=false"]],
    ids=["own-claim", "existing-claim", "off"],
)
def test_the_journal_settings_render_a_valid_spark_application(
    helm: str, crds: None, values: list[str]
) -> None:
    """The journal tests above need no CRDs; validating the SparkApplication does."""
    args = [arg for value in values for arg in ("--set", value)]
    (app,) = by_kind(template(helm, *args), "SparkApplication")
    assert validate(app) == []


def test_mutual_tls_and_the_server_name_reach_the_feeder(helm: str) -> None:
    (app,) = by_kind(
        template(
            helm,
            "--set",
            "feeder.tls.mutual=true",
            "--set",
            "feeder.tls.serverName=icefeed-feeder.ml.svc",
        ),
        "SparkApplication",
    )
    args = feeder_arguments(app)
    assert args.tls_client_ca == args.tls_ca == "/etc/icefeed/tls/ca.crt"
    assert args.tls_server_name == "icefeed-feeder.ml.svc"
    assert not args.insecure
    (plain,) = by_kind(template(helm), "SparkApplication")
    assert feeder_arguments(plain).tls_client_ca is None


def test_executors_get_the_storage_credentials_from_the_s3_secret(helm: str) -> None:
    (app,) = by_kind(template(helm), "SparkApplication")
    (container,) = app["spec"]["executor"]["template"]["spec"]["containers"]
    refs = [e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e]
    assert "icefeed-s3" in refs  # AWS_* in the node's own environment, never over Flight


def test_tls_without_a_secret_name_fails_with_a_clear_message(helm: str) -> None:
    result = run_helm(helm, "template", "rel", str(CHART), "--set", "feeder.tls.existingSecret=")
    assert result.returncode != 0
    assert "feeder.tls.existingSecret is required" in result.stderr, result.stderr


def test_spark_rpc_is_authenticated_and_encrypted_everywhere_by_default(helm: str) -> None:
    apps = [load_manifest(p) for p in shipped_manifests()]
    apps += [
        o
        for o in template(helm, *[a for s in NIGHTLY_JOB for a in ("--set", s)])
        if o["kind"] in SPARK_KINDS
    ]
    assert len(apps) == 5
    for app in apps:
        spec = app["spec"].get("template", app["spec"])
        conf = spec["sparkConf"]
        assert conf["spark.authenticate"] == "true", app["metadata"]["name"]
        assert conf["spark.network.crypto.enabled"] == "true", app["metadata"]["name"]
        assert not any("secret" in key and key != "spark.authenticate" for key in conf)


def test_feeder_spark_conf_replaces_a_chart_default_without_a_duplicate_key(helm: str) -> None:
    text = template_text(
        helm, "--set-string", "feeder.sparkConf.spark\\.network\\.crypto\\.enabled=false"
    )
    assert text.count("spark.network.crypto.enabled:") == 1
    (app,) = by_kind([d for d in yaml.safe_load_all(text) if d], "SparkApplication")
    assert app["spec"]["sparkConf"]["spark.network.crypto.enabled"] == "false"
    assert app["spec"]["sparkConf"]["spark.authenticate"] == "true"


# --- A CleanSpec carried in the values: a ConfigMap mounted into the driver ---


def test_a_chart_with_an_inline_clean_spec_validates(helm: str, crds: None) -> None:
    assert_valid(template(helm, *INLINE_JOB), SPARK_KINDS)


def test_an_inline_clean_spec_is_a_configmap_the_driver_reads(helm: str) -> None:
    from jobs.clean.spec import CleanSpec

    objects = template(helm, *INLINE_JOB)
    assert_valid(objects, core_kinds(objects))
    (config_map,) = [
        o for o in by_kind(objects, "ConfigMap") if "cleanspec" in o["metadata"]["name"]
    ]
    assert config_map["metadata"]["name"] == "clean-events-cleanspec"
    spec = CleanSpec.from_dict(yaml.safe_load(config_map["data"]["cleanspec.yaml"]))
    assert spec == CleanSpec.from_dict(INLINE_SPEC)

    (app,) = by_kind(objects, "ScheduledSparkApplication")
    template_spec = app["spec"]["template"]
    assert template_spec["arguments"] == [
        "jobs.clean",
        "/etc/icefeed/cleanspec/cleanspec.yaml",
        "--json",
    ]
    volume = next(v for v in template_spec["volumes"] if v["name"] == "cleanspec")
    assert volume == {"name": "cleanspec", "configMap": {"name": "clean-events-cleanspec"}}
    mount = next(m for m in template_spec["driver"]["volumeMounts"] if m["name"] == "cleanspec")
    assert mount == {"name": "cleanspec", "mountPath": "/etc/icefeed/cleanspec", "readOnly": True}


@pytest.mark.parametrize(
    "job",
    [
        {"name": "both", "schedule": "@daily", "spec": "/s.yaml", "specInline": INLINE_SPEC},
        {"name": "neither", "schedule": "@daily"},
    ],
    ids=["both", "neither"],
)
def test_a_clean_job_names_exactly_one_spec(helm: str, job: dict[str, Any]) -> None:
    values = ["--set", "clean.enabled=true", "--set-json", "clean.jobs=" + json.dumps([job])]
    result = run_helm(helm, "template", "rel", str(CHART), *values)
    assert result.returncode != 0
    assert "oneOf" in result.stderr or "not both" in result.stderr, result.stderr
