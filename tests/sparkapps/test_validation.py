"""sparkapps.validate: CRD schema, unknown fields, webhook rules, Kubernetes schemas."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.errors import ManifestError
from sparkapps.crds import Kind, crd_source
from sparkapps.manifests import load_manifest
from sparkapps.paths import shipped_manifests
from sparkapps.problems import Check
from sparkapps.validation import (
    FORBIDDEN_SPARK_CONF,
    document_problems,
    pod_template_problems,
    unknown_field_problems,
    validate,
    webhook_problems,
)

pytestmark = pytest.mark.k8s


def paths_of(problems: list[Any], check: Check | None = None) -> list[str]:
    return [p.path for p in problems if check is None or p.check is check]


@pytest.mark.parametrize("path", shipped_manifests(), ids=lambda p: p.name)
def test_every_shipped_manifest_is_valid(crds: None, path: Path) -> None:
    manifest = load_manifest(path)
    assert manifest["kind"] in {k.value for k in Kind}
    assert validate(manifest) == []


def test_there_are_three_shipped_manifests() -> None:
    names = {p.name for p in shipped_manifests()}
    assert names == {"clean-flights.yaml", "clean-flights-nightly.yaml", "feeder.yaml"}


def test_a_misspelt_field_passes_the_schema_but_not_the_field_check(
    crds: None, clean_app: dict
) -> None:
    clean_app["spec"]["executor"]["port"] = [{"name": "flight", "containerPort": 8816}]
    problems = validate(clean_app)
    unknown = [p for p in problems if p.check is Check.UNKNOWN_FIELD]
    assert [p.path for p in unknown] == ["spec.executor.port"]
    assert "ports" in unknown[0].hint
    assert not [p for p in problems if p.check is Check.SCHEMA]


def test_schema_errors_carry_the_path_and_the_valid_values(crds: None, clean_app: dict) -> None:
    clean_app["spec"]["type"] = "Pyhton"
    del clean_app["spec"]["mainApplicationFile"]
    clean_app["spec"]["executor"]["instances"] = "two"
    problems = validate(clean_app)
    by_path = {p.path: p for p in problems if p.check is Check.SCHEMA}
    assert "Java" in by_path["spec.type"].hint and "Python" in by_path["spec.type"].hint
    assert "mainApplicationFile" in by_path["spec"].message
    assert "spec.executor.instances" in by_path


def test_maps_are_open_but_their_values_are_typed(crds: None, clean_app: dict) -> None:
    clean_app["spec"]["sparkConf"]["spark.any.key.at.all"] = "fine"
    assert validate(clean_app) == []
    clean_app["spec"]["sparkConf"]["spark.executor.cores"] = 2
    assert paths_of(validate(clean_app), Check.SCHEMA) == ["spec.sparkConf.spark.executor.cores"]


@pytest.mark.parametrize("key", sorted(FORBIDDEN_SPARK_CONF))
def test_the_webhook_refuses_reserved_spark_conf_keys(clean_app: dict, key: str) -> None:
    clean_app["spec"]["sparkConf"][key] = "x"
    problems = webhook_problems(clean_app["spec"], namespace=None)
    assert paths_of(problems) == [f"spec.sparkConf[{key}]"]
    assert problems[0].check is Check.WEBHOOK and problems[0].hint


def test_the_webhook_refuses_oauth_tokens_without_echoing_them(clean_app: dict) -> None:
    key = "spark.kubernetes.authenticate.submission.oauthToken"
    clean_app["spec"]["sparkConf"][key] = "very-secret-token-value"
    problems = webhook_problems(clean_app["spec"], namespace=None)
    assert paths_of(problems, Check.WEBHOOK) == [f"spec.sparkConf[{key}]"]
    assert "very-secret-token-value" not in str(problems[0])


def test_spark_namespace_must_match_the_application_namespace(clean_app: dict) -> None:
    clean_app["spec"]["sparkConf"]["spark.kubernetes.namespace"] = "ml"
    assert webhook_problems(clean_app["spec"], namespace="ml") == []
    clean_app["spec"]["sparkConf"]["spark.kubernetes.namespace"] = "other"
    assert paths_of(webhook_problems(clean_app["spec"], namespace="ml"), Check.WEBHOOK) == [
        "spec.sparkConf[spark.kubernetes.namespace]"
    ]


def test_pod_templates_are_checked_against_the_kubernetes_pod_schema() -> None:
    feeder = load_manifest(Path("sparkapps/feeder.yaml").resolve())
    container = feeder["spec"]["executor"]["template"]["spec"]["containers"][0]
    container["volumeMount"] = container.pop("volumeMounts")  # typo inside the template
    problems = pod_template_problems(feeder["spec"])
    assert [p.check for p in problems] == [Check.KUBERNETES]
    assert problems[0].path.startswith("spec.executor.template.spec.containers")
    assert "volumeMount" in problems[0].message


def test_a_pod_template_with_a_wrong_type_is_reported() -> None:
    feeder = load_manifest(Path("sparkapps/feeder.yaml").resolve())
    ports = feeder["spec"]["driver"]["template"]["spec"]["containers"][0]["ports"]
    ports[0]["containerPort"] = "flight"
    problems = pod_template_problems(feeder["spec"])
    assert problems and problems[0].path.startswith("spec.driver.template.spec.containers")


def test_scheduled_applications_are_checked_inside_their_template(crds: None) -> None:
    nightly = load_manifest(Path("sparkapps/clean-flights-nightly.yaml").resolve())
    nightly["spec"]["template"]["driver"]["coers"] = 1
    nightly["spec"]["template"]["sparkConf"]["spark.master"] = "local[*]"
    del nightly["spec"]["schedule"]
    problems = validate(nightly)
    assert "spec.template.driver.coers" in paths_of(problems, Check.UNKNOWN_FIELD)
    assert "spec.template.sparkConf[spark.master]" in paths_of(problems, Check.WEBHOOK)
    assert any("schedule" in p.message for p in problems if p.check is Check.SCHEMA)


def test_names_and_api_version_are_checked(clean_app: dict) -> None:
    clean_app["metadata"]["name"] = "Clean_Flights"
    clean_app["apiVersion"] = "sparkoperator.k8s.io/v1beta1"
    found = paths_of(list(document_problems(clean_app)), Check.MANIFEST)
    assert "metadata.name" in found and "apiVersion" in found


def test_core_objects_are_checked_against_kubernetes_schemas() -> None:
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"selector": {"a": "b"}, "ports": [{"port": 1, "targetPorrt": 2}]},
    }
    problems = validate(service)
    assert len(problems) == 1 and problems[0].check is Check.KUBERNETES
    assert "targetPorrt" in problems[0].message
    del service["spec"]["ports"][0]["targetPorrt"]
    assert validate(service) == []


def test_a_missing_crd_folder_is_a_clear_error(
    clean_app: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ICEFEED_CRDS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ManifestError, match="ICEFEED_CRDS_DIR"):
        validate(clean_app)


_SPEC_OBJECTS = ["spec", "spec.driver", "spec.executor", "spec.deps", "spec.restartPolicy"]
_field_names = st.from_regex(r"[a-z][a-zA-Z]{2,12}", fullmatch=True)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(where=st.sampled_from(_SPEC_OBJECTS), key=_field_names)
def test_any_field_name_not_in_the_schema_is_reported_exactly_there(
    crds: None, clean_app: dict, where: str, key: str
) -> None:
    schema = crd_source().load(Kind.SPARK_APPLICATION).schema
    node_schema = schema
    manifest = copy.deepcopy(clean_app)
    node = manifest
    for part in where.split("."):
        node_schema = node_schema["properties"][part]
        node = node.setdefault(part, {})
    node[key] = "x"
    problems = unknown_field_problems(manifest, schema)
    if key in node_schema["properties"]:
        assert f"{where}.{key}" not in [p.path for p in problems]
    else:
        assert [p.path for p in problems] == [f"{where}.{key}"]


def test_the_kubernetes_version_has_offline_schemas_and_a_bad_one_is_clear(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import kubernetes_validate.utils as kv_utils

    from sparkapps.validation import kubernetes_version

    assert f"{kubernetes_version()}.0" in kv_utils.all_versions()
    monkeypatch.setenv("ICEFEED_K8S_VERSION", "9.99")
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {}}
    with pytest.raises(ManifestError, match="ICEFEED_K8S_VERSION"):
        validate(service)


def test_unknown_core_kinds_are_problems_but_third_party_crds_are_skipped() -> None:
    typo = {"apiVersion": "v1", "kind": "Servise", "metadata": {"name": "s"}}
    assert [p.check for p in validate(typo)] == [Check.KUBERNETES]
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "m"},
        "spec": {},
    }
    assert validate(monitor) == []
