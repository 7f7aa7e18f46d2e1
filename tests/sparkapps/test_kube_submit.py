"""``submit``: the server's strict dry run, CRDs from the cluster, --update and --replace.

Against the FAKE Kubernetes API server (fake_apiserver.py; no real cluster runs
here), with the real ``kubernetes`` client.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from sparkapps import kube
from sparkapps.crds import NoCrds
from sparkapps.kube import OnExisting, SubmitAction
from sparkapps.problems import (
    ApplicationExistsError,
    KubernetesApiError,
    ManifestInvalidError,
    WaitTimeoutError,
)
from sparkapps.state import AppState
from tests.sparkapps.fake_apiserver import FakeKubeApiServer

pytestmark = pytest.mark.k8s

APPS = "/apis/sparkoperator.k8s.io/v1beta2/namespaces/ml/sparkapplications"


@pytest.fixture()
def cluster_crds(
    fake_api: FakeKubeApiServer, crds: Path, monkeypatch: pytest.MonkeyPatch
) -> FakeKubeApiServer:
    """The FAKE with the operator's CRDs installed, and no CRD folder named locally."""
    fake_api.install_crds(crds)
    monkeypatch.delenv("ICEFEED_CRDS_DIR", raising=False)
    return fake_api


def _body(app: dict[str, Any]) -> dict[str, Any]:
    return kube.checked_body(app, "ml")


def test_without_a_crd_folder_the_schema_comes_from_the_cluster(
    cluster_crds: FakeKubeApiServer, client: Any, app: dict
) -> None:
    app["spec"]["executor"]["instancs"] = 3
    with pytest.raises(ManifestInvalidError) as info:
        kube.submit(app, namespace="ml", client=client)
    assert [p.path for p in info.value.problems] == ["spec.executor.instancs"]
    assert cluster_crds.writes == []
    (crd_read,) = cluster_crds.requests
    assert crd_read.path == (
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
        "sparkapplications.sparkoperator.k8s.io"
    )


def test_the_servers_strict_dry_run_refuses_what_local_checks_had_to_skip(
    cluster_crds: FakeKubeApiServer, client: Any, app: dict, caplog: pytest.LogCaptureFixture
) -> None:
    cluster_crds.crd_reads_forbidden = True  # RBAC: the schema cannot be read, yet is enforced
    app["spec"]["executor"]["instancs"] = 3
    with pytest.raises(
        KubernetesApiError, match=r'unknown field "spec\.executor\.instancs"'
    ) as info:
        kube.submit(app, namespace="ml", client=client)
    assert info.value.status == 400 and "server-side dry run" in str(info.value)
    assert "may not read CustomResourceDefinitions" in caplog.text  # the skip was reported
    (dry_run,) = cluster_crds.writes
    assert dry_run.query == {"dryRun": ["All"], "fieldValidation": ["Strict"]}
    assert cluster_crds.objects == {}


def test_skipped_checks_are_reported_and_the_rest_still_run(
    fake_api: FakeKubeApiServer, client: Any, app: dict
) -> None:
    skipped: list[Any] = []
    no_schema = NoCrds("none named")
    body = kube.checked_body(app, "ml", crds=no_schema, on_skipped=skipped.append)
    assert [c.value for c in skipped[0].checks] == ["schema", "unknown-field"]
    assert "none named" in str(skipped[0])
    app["spec"]["sparkConf"]["spark.master"] = "local[*]"  # a webhook rule: needs no schema
    with pytest.raises(ManifestInvalidError, match=r"spark\.master"):
        kube.checked_body(app, "ml", crds=no_schema, on_skipped=skipped.append)
    assert body["metadata"]["namespace"] == "ml"


def test_an_existing_application_is_a_conflict_that_names_update_and_replace(
    fake_api: FakeKubeApiServer, client: Any, clean_app: dict
) -> None:
    app = clean_app  # submit reads the schema from the fake cluster, or skips it
    kube.submit(app, namespace="ml", client=client)
    with pytest.raises(ApplicationExistsError, match=r"--update.*--replace") as info:
        kube.submit(app, namespace="ml", client=client)
    assert info.value.status == 409
    assert len(fake_api.writes) == 3  # dry run + create, then the refused dry run only


def test_update_puts_the_new_spec_into_the_object_and_the_run_starts_again(
    fake_api: FakeKubeApiServer, client: Any, clean_app: dict
) -> None:
    app = clean_app  # submit reads the schema from the fake cluster, or skips it
    kube.submit(app, namespace="ml", client=client)
    first = kube.get_object("clean-flights", namespace="ml", client=client)
    assert first["status"]["applicationState"]["state"] == "SUBMITTED"

    unchanged, _ = kube.submit_body(_body(app), client=client, on_existing=OnExisting.UPDATE)
    assert unchanged is SubmitAction.UNCHANGED
    assert [r.method for r in fake_api.writes] == ["POST", "POST", "POST"]  # nothing written

    app["spec"]["executor"]["instances"] = 7
    action, updated = kube.submit_body(_body(app), client=client, on_existing=OnExisting.UPDATE)
    assert action is SubmitAction.UPDATED and updated.state is AppState.NEW
    dry_put, put = fake_api.writes[-2:]
    assert (dry_put.method, dry_put.query["dryRun"], put.method) == ("PUT", ["All"], "PUT")
    assert put.query == {"fieldValidation": ["Strict"]}
    assert put.body["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    now = kube.get_object("clean-flights", namespace="ml", client=client)
    assert now["spec"]["executor"]["instances"] == 7
    assert now["metadata"]["uid"] == first["metadata"]["uid"]  # the same object


def test_replace_deletes_waits_until_gone_and_creates_a_new_object(
    fake_api: FakeKubeApiServer, client: Any, clean_app: dict
) -> None:
    app = clean_app  # submit reads the schema from the fake cluster, or skips it
    kube.submit(app, namespace="ml", client=client)
    old = kube.get_object("clean-flights", namespace="ml", client=client)
    fake_api.linger_after_delete = 3  # finalizers: three more GETs see it
    action, created = kube.submit_body(_body(app), client=client, on_existing=OnExisting.REPLACE)
    assert action is SubmitAction.REPLACED and created.name == "clean-flights"
    methods = [(r.method, "dryRun" in r.query) for r in fake_api.writes[2:]]
    assert methods == [("POST", True), ("PUT", True), ("DELETE", False), ("POST", False)]
    gets = [r for r in fake_api.requests if r.method == "GET" and r.path == f"{APPS}/clean-flights"]
    assert len(gets) >= 1 + 1 + 3  # read old, read for the update check, waited out the linger
    new = kube.get_object("clean-flights", namespace="ml", client=client)
    assert new["metadata"]["uid"] != old["metadata"]["uid"]


def test_replace_gives_up_when_the_old_object_stays(
    fake_api: FakeKubeApiServer, client: Any, clean_app: dict
) -> None:
    app = clean_app  # submit reads the schema from the fake cluster, or skips it
    kube.submit(app, namespace="ml", client=client)
    fake_api.linger_after_delete = 10_000
    with pytest.raises(WaitTimeoutError, match="still being deleted"):
        kube.submit_body(
            _body(app), client=client, on_existing=OnExisting.REPLACE, replace_timeout=0.3
        )
    assert [r.method for r in fake_api.writes].count("POST") == 3  # no second create


def test_a_refused_replace_deletes_nothing(
    cluster_crds: FakeKubeApiServer, client: Any, app: dict
) -> None:
    kube.submit(app, namespace="ml", client=client)
    bad = copy.deepcopy(app)
    bad["spec"]["driver"]["coress"] = 2
    body = kube.checked_body(bad, "ml", crds=NoCrds("test"), on_skipped=lambda s: None)
    with pytest.raises(KubernetesApiError, match=r'unknown field "spec\.driver\.coress"'):
        kube.submit_body(body, client=client, on_existing=OnExisting.REPLACE)
    assert "DELETE" not in [r.method for r in cluster_crds.writes]
    assert ("ml", "sparkapplications", "clean-flights") in cluster_crds.objects
