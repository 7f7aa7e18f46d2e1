"""list / events / follow_logs against the FAKE Kubernetes API server (no cluster runs here)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sparkapps import kube, observe
from sparkapps.crds import Kind
from sparkapps.problems import ApplicationNotFoundError, WaitTimeoutError
from tests.sparkapps.fake_apiserver import FakeKubeApiServer

pytestmark = pytest.mark.k8s


def _submit(app: dict[str, Any], name: str, namespace: str, client: Any, **labels: str) -> None:
    copy_ = copy.deepcopy(app)
    copy_["metadata"]["name"] = name
    copy_["metadata"].setdefault("labels", {}).update(labels)
    kube.submit(copy_, namespace=namespace, client=client)


def test_list_one_namespace_all_namespaces_and_by_label(
    fake_api: FakeKubeApiServer, client: Any, clean_app: dict
) -> None:
    _submit(clean_app, "b-app", "ml", client, team="x")
    _submit(clean_app, "a-app", "ml", client, team="y")
    _submit(clean_app, "c-app", "other", client, team="x")
    names = [o["metadata"]["name"] for o in observe.list_objects(namespace="ml", client=client)]
    assert names == ["a-app", "b-app"]  # sorted
    everywhere = observe.list_objects(namespace=None, client=client)
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in everywhere] == [
        ("ml", "a-app"),
        ("ml", "b-app"),
        ("other", "c-app"),
    ]
    labelled = observe.list_objects(namespace=None, selector="team=x", client=client)
    assert [o["metadata"]["name"] for o in labelled] == ["b-app", "c-app"]
    assert observe.list_objects(kind=Kind.SCHEDULED_SPARK_APPLICATION, client=client) == []
    assert fake_api.requests[-1].path == (
        "/apis/sparkoperator.k8s.io/v1beta2/namespaces/default/scheduledsparkapplications"
    )


def test_events_of_the_application_and_then_of_its_driver_pod(
    fake_api: FakeKubeApiServer, client: Any, clean_app: dict
) -> None:
    fake_api.script("clean-flights", ("SUBMITTED", ""), ("FAILED", "OOMKilled"))
    kube.submit(clean_app, namespace="ml", client=client)
    (submitted,) = observe.events("clean-flights", namespace="ml", client=client)
    assert submitted.reason == "SparkApplicationSubmitted"  # the FAKE operator's first step
    found = observe.events("clean-flights", namespace="ml", client=client)  # now FAILED
    assert [(e.object, e.type, e.reason) for e in found] == [
        ("SparkApplication/clean-flights", "Normal", "SparkApplicationSubmitted"),
        ("SparkApplication/clean-flights", "Warning", "SparkApplicationFailed"),
        ("Pod/clean-flights-driver", "Normal", "Started"),
    ]
    assert found[1].message.endswith("OOMKilled")
    selectors = [r.query["fieldSelector"] for r in fake_api.requests if r.path.endswith("/events")]
    assert selectors[-1] == ["involvedObject.kind=Pod,involvedObject.name=clean-flights-driver"]


def test_events_of_an_unknown_application_is_not_found(
    fake_api: FakeKubeApiServer, client: Any
) -> None:
    with pytest.raises(ApplicationNotFoundError):
        observe.events("nope", namespace="ml", client=client)


def test_follow_waits_for_the_driver_and_streams_the_log_as_it_is_written(
    fake_api: FakeKubeApiServer, client: Any, clean_app: dict
) -> None:
    kube.submit(clean_app, namespace="ml", client=client)
    fake_api.log_waiting["clean-flights"] = 2  # the container pulls its image first
    pipe = fake_api.log_pipe("clean-flights")
    pipe.write("line 1\n")
    stream = observe.follow_logs("clean-flights", namespace="ml", client=client, poll_seconds=0.01)
    assert next(stream) == "line 1\n"
    pipe.write("line 2\n")  # written after the client started reading
    assert next(stream) == "line 2\n"
    pipe.write("ünï")
    pipe.close()
    assert "".join(stream) == "ünï"
    follows = [r for r in fake_api.requests if r.query.get("follow") == ["true"]]
    assert len(follows) == 3 and pipe.followers == 1  # two refusals while waiting, one stream
    assert follows[-1].path == "/api/v1/namespaces/ml/pods/clean-flights-driver/log"


def test_follow_gives_up_when_no_driver_starts(
    fake_api: FakeKubeApiServer, client: Any, clean_app: dict
) -> None:
    fake_api.script("clean-flights", ("SUBMITTED", ""))
    kube.submit(clean_app, namespace="ml", client=client)
    with pytest.raises(WaitTimeoutError, match="waiting for driver pod"):
        list(
            observe.follow_logs(
                "clean-flights", namespace="ml", client=client, timeout=0.2, poll_seconds=0.02
            )
        )
