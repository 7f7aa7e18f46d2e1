"""Run a ScheduledSparkApplication now: the pure builder, and ``trigger`` against the FAKE API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobs.errors import ManifestError
from sparkapps import kube, observe
from sparkapps.crds import Kind
from sparkapps.manifests import load_manifest
from sparkapps.paths import MANIFEST_DIR
from sparkapps.problems import ApplicationNotFoundError
from sparkapps.schedule import (
    SCHEDULED_APP_LABEL,
    run_from_schedule,
    run_name,
    trigger,
)
from tests.sparkapps.fake_apiserver import FakeKubeApiServer

NS = 1_767_225_600_000_000_000


def _scheduled(**metadata: Any) -> dict[str, Any]:
    nightly = load_manifest(MANIFEST_DIR / "clean-flights-nightly.yaml")
    nightly["metadata"].update(uid="u-1", namespace="ml", **metadata)
    return nightly


def test_a_run_is_the_template_owned_by_the_schedule_and_labelled_as_the_operator_does() -> None:
    scheduled = _scheduled()
    run = run_from_schedule(scheduled, now_ns=NS)
    assert run["kind"] == "SparkApplication"
    assert run["metadata"]["name"] == f"clean-flights-nightly-{NS}"
    assert run["metadata"]["namespace"] == "ml"
    assert run["metadata"]["labels"][SCHEDULED_APP_LABEL] == "clean-flights-nightly"
    (owner,) = run["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "ScheduledSparkApplication",
        "name": "clean-flights-nightly",
        "uid": "u-1",
        "blockOwnerDeletion": True,
    }
    assert run["spec"] == scheduled["spec"]["template"]
    run["spec"]["driver"]["cores"] = 99
    assert scheduled["spec"]["template"]["driver"].get("cores") != 99, "a copy, not a view"


def test_a_long_name_is_shortened_to_a_valid_63_character_name() -> None:
    name = run_name("x" * 60 + "-", NS)
    assert len(name) == 63 and name.endswith(f"-{NS}") and "--" not in name


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "SparkApplication"}, "not a ScheduledSparkApplication"),
        ({"metadata": {"name": "x"}}, "metadata.uid"),
        ({"spec": {"schedule": "@daily"}}, "no spec.template"),
    ],
)
def test_what_cannot_be_run_says_why(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        run_from_schedule({**_scheduled(), **change}, now_ns=NS)


@pytest.mark.k8s
def test_trigger_creates_a_run_the_operator_then_plays(
    fake_api: FakeKubeApiServer, client: Any, crds: Path
) -> None:
    nightly = load_manifest(MANIFEST_DIR / "clean-flights-nightly.yaml")
    kube.submit(nightly, namespace="ml", client=client)
    scheduled = kube.get_object(
        "clean-flights-nightly",
        namespace="ml",
        kind=Kind.SCHEDULED_SPARK_APPLICATION,
        client=client,
    )
    run = trigger("clean-flights-nightly", namespace="ml", client=client)
    assert run.name.startswith("clean-flights-nightly-") and run.namespace == "ml"
    dry_run, create = fake_api.writes[-2:]
    assert dry_run.query["dryRun"] == ["All"] and create.path.endswith("/ml/sparkapplications")
    assert create.body["metadata"]["ownerReferences"][0]["uid"] == scheduled["metadata"]["uid"]
    assert create.body["spec"] == scheduled["spec"]["template"]
    final = kube.wait(run.name, namespace="ml", client=client, poll_seconds=0.01)
    assert final.state.value == "COMPLETED"
    listed = observe.list_objects(
        namespace="ml", selector=f"{SCHEDULED_APP_LABEL}=clean-flights-nightly", client=client
    )
    assert [o["metadata"]["name"] for o in listed] == [run.name]


@pytest.mark.k8s
def test_triggering_an_unknown_schedule_creates_nothing(
    fake_api: FakeKubeApiServer, client: Any
) -> None:
    with pytest.raises(ApplicationNotFoundError, match="nightly"):
        trigger("nightly", namespace="ml", client=client)
    assert fake_api.writes == []
