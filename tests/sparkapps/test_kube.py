"""submit / status / wait / logs / delete against a FAKE Kubernetes API server.

No real API server or operator runs here: ``FakeKubeApiServer`` (see
fake_apiserver.py) is a FAKE that checks what the official client sends and
plays back the operator's state transitions. The client under test is the
real ``kubernetes`` package talking HTTP to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.errors import ManifestError
from sparkapps import kube
from sparkapps.crds import Kind
from sparkapps.manifests import load_manifest
from sparkapps.paths import MANIFEST_DIR
from sparkapps.problems import (
    ApplicationExistsError,
    ApplicationFailedError,
    ApplicationNotFoundError,
    KubernetesApiError,
    ManifestInvalidError,
    WaitTimeoutError,
)
from sparkapps.state import AppState
from tests.sparkapps.fake_apiserver import FakeKubeApiServer

pytestmark = pytest.mark.k8s

APPS = "/apis/sparkoperator.k8s.io/v1beta2/namespaces/ml/sparkapplications"


def test_submit_sends_the_validated_manifest_to_the_right_resource(
    fake_api: FakeKubeApiServer, client: Any, app: dict
) -> None:
    created = kube.submit(app, namespace="ml", client=client)
    assert created.name == "clean-flights" and created.namespace == "ml"
    dry_run, request = fake_api.requests  # the CRDs come from ICEFEED_CRDS_DIR: no GET
    assert (dry_run.method, dry_run.path, dry_run.body) == ("POST", APPS, request.body)
    assert dry_run.query == {"dryRun": ["All"], "fieldValidation": ["Strict"]}
    assert request.query == {"fieldValidation": ["Strict"]}
    assert (request.method, request.path) == ("POST", APPS)
    assert request.body["metadata"] == {**app["metadata"], "namespace": "ml"}
    assert request.body["spec"] == app["spec"]
    assert "namespace" not in app["metadata"], "submit must not mutate its argument"


def test_submit_refuses_an_invalid_manifest_and_sends_nothing(
    fake_api: FakeKubeApiServer, client: Any, app: dict
) -> None:
    app["spec"]["executor"]["instancs"] = 3
    with pytest.raises(ManifestInvalidError) as info:
        kube.submit(app, namespace="ml", client=client)
    assert [p.path for p in info.value.problems] == ["spec.executor.instancs"]
    assert fake_api.requests == []


def test_a_second_submit_of_the_same_name_is_a_conflict(
    fake_api: FakeKubeApiServer, client: Any, clean_app: dict
) -> None:
    kube.submit(clean_app, namespace="ml", client=client)
    with pytest.raises(ApplicationExistsError, match="already exists") as info:
        kube.submit(clean_app, namespace="ml", client=client)
    assert info.value.status == 409
    kube.submit(clean_app, namespace="other", client=client)  # same name, other namespace: fine


def test_wait_streams_state_changes_until_completed(
    fake_api: FakeKubeApiServer, client: Any, clean_app: dict
) -> None:
    kube.submit(clean_app, namespace="ml", client=client)
    submitted = len(fake_api.requests)  # (without CRDs, submit reads the cluster's)
    seen: list[AppState] = []
    final = kube.wait(
        "clean-flights",
        namespace="ml",
        client=client,
        poll_seconds=0.01,
        on_change=lambda s: seen.append(s.state),
    )
    assert seen == [AppState.SUBMITTED, AppState.RUNNING, AppState.COMPLETED]
    assert final.state is AppState.COMPLETED and final.driver_pod == "clean-flights-driver"
    waited = fake_api.requests[submitted:]
    assert {r.path for r in waited if r.method == "GET"} == {f"{APPS}/clean-flights"}


def test_failed_executors_do_not_make_a_running_application_failed(
    fake_api: FakeKubeApiServer, client: Any, clean_app: dict
) -> None:
    kube.submit(clean_app, namespace="ml", client=client)
    kube.status("clean-flights", namespace="ml", client=client)  # SUBMITTED
    running = kube.status("clean-flights", namespace="ml", client=client)
    assert running.state is AppState.RUNNING
    assert set(running.executor_states.values()) == {"FAILED"}
    assert not running.state.terminal


def test_wait_raises_the_operators_error_message_on_failed(
    fake_api: FakeKubeApiServer, client: Any, clean_app: dict
) -> None:
    fake_api.script(
        "clean-flights",
        ("SUBMITTED", ""),
        ("RUNNING", ""),
        ("FAILED", "driver container failed with ExitCode: 2, Reason: Error"),
    )
    kube.submit(clean_app, namespace="ml", client=client)
    with pytest.raises(ApplicationFailedError, match="ExitCode: 2") as info:
        kube.wait("clean-flights", namespace="ml", client=client, poll_seconds=0.01)
    assert info.value.error_message.startswith("driver container failed")


def test_submission_failed_is_not_terminal_and_wait_times_out(
    fake_api: FakeKubeApiServer, client: Any, clean_app: dict
) -> None:
    fake_api.script("clean-flights", ("SUBMISSION_FAILED", "retrying"))
    kube.submit(clean_app, namespace="ml", client=client)
    with pytest.raises(WaitTimeoutError, match="SUBMISSION_FAILED"):
        kube.wait("clean-flights", namespace="ml", client=client, timeout=0.2, poll_seconds=0.02)


def test_logs_read_the_driver_pod_named_by_the_operator(
    fake_api: FakeKubeApiServer, client: Any, clean_app: dict
) -> None:
    fake_api.driver_logs["clean-flights"] = "line 1\nline 2\nrows_written: 42\n"
    kube.submit(clean_app, namespace="ml", client=client)
    with pytest.raises(ManifestError, match="no driver pod yet"):
        kube.logs("clean-flights", namespace="ml", client=client)  # SUBMITTED: no driver
    assert kube.logs("clean-flights", namespace="ml", client=client).endswith("rows_written: 42\n")
    assert kube.logs("clean-flights", namespace="ml", client=client, tail_lines=1) == (
        "rows_written: 42\n"
    )
    log_request = next(r for r in fake_api.requests if r.path.endswith("/log"))
    assert log_request.path == "/api/v1/namespaces/ml/pods/clean-flights-driver/log"


def test_delete_removes_it_and_then_it_is_not_found(
    fake_api: FakeKubeApiServer, client: Any, clean_app: dict
) -> None:
    kube.submit(clean_app, namespace="ml", client=client)
    kube.delete("clean-flights", namespace="ml", client=client)
    assert fake_api.requests[-1].method == "DELETE"
    with pytest.raises(ApplicationNotFoundError):
        kube.status("clean-flights", namespace="ml", client=client)
    with pytest.raises(ApplicationNotFoundError):
        kube.delete("clean-flights", namespace="ml", client=client)


def _app_requests(fake_api: FakeKubeApiServer) -> list[Any]:
    """The requests about applications (without CRDs, submit reads the cluster's first)."""
    return [r for r in fake_api.requests if "customresourcedefinitions" not in r.path]


def test_scheduled_applications_use_their_own_resource(
    fake_api: FakeKubeApiServer, client: Any
) -> None:
    nightly = load_manifest(MANIFEST_DIR / "clean-flights-nightly.yaml")
    kube.submit(nightly, namespace="ml", client=client)
    assert _app_requests(fake_api)[0].path.endswith("/namespaces/ml/scheduledsparkapplications")
    obj = kube.get_object(
        "clean-flights-nightly",
        namespace="ml",
        kind=Kind.SCHEDULED_SPARK_APPLICATION,
        client=client,
    )
    assert obj["spec"]["schedule"] == "0 2 * * *"
    kube.delete(
        "clean-flights-nightly",
        namespace="ml",
        kind=Kind.SCHEDULED_SPARK_APPLICATION,
        client=client,
    )


def test_conflicting_namespaces_are_refused(client: Any, clean_app: dict) -> None:
    clean_app["metadata"]["namespace"] = "ml"
    with pytest.raises(ManifestError, match="differs"):
        kube.submit(clean_app, namespace="other", client=client)


def test_an_unreachable_api_server_is_a_manifest_error() -> None:
    import socket

    from kubernetes import client as k8s

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    configuration = k8s.Configuration(host=f"http://127.0.0.1:{port}")
    configuration.retries = 0
    with pytest.raises(KubernetesApiError, match="cannot reach"):
        kube.status("x", namespace="ml", client=k8s.ApiClient(configuration))


# --- the CLI, through a kubeconfig pointing at the FAKE server --------------------


def _cli(*args: str) -> int:
    from sparkapps.cli import main

    return main(["sparkapp", *args])


def test_cli_submit_wait_streams_states_and_exits_zero(
    kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _cli(
        "submit",
        str(MANIFEST_DIR / "clean-flights.yaml"),
        "-n",
        "ml",
        "--kubeconfig",
        kubeconfig,
        "--wait",
        "--poll",
        "0.01",
    )
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out == [
        "submitted SparkApplication ml/clean-flights",
        "ml/clean-flights: SUBMITTED",
        "ml/clean-flights: RUNNING",
        "ml/clean-flights: COMPLETED",
    ]


def test_cli_submit_wait_exits_nonzero_with_the_error_message_on_failed(
    fake_api: FakeKubeApiServer, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_api.script("clean-flights", ("RUNNING", ""), ("FAILED", "OOMKilled"))
    code = _cli(
        "submit",
        str(MANIFEST_DIR / "clean-flights.yaml"),
        "-n",
        "ml",
        "--kubeconfig",
        kubeconfig,
        "--wait",
        "--poll",
        "0.01",
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "FAILED: OOMKilled" in captured.err
    assert "ml/clean-flights: FAILED - OOMKilled" in captured.out


def test_cli_conflict_status_logs_delete(
    fake_api: FakeKubeApiServer, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    file = str(MANIFEST_DIR / "clean-flights.yaml")
    assert _cli("submit", file, "-n", "ml", "--kubeconfig", kubeconfig) == 0
    assert _cli("submit", file, "-n", "ml", "--kubeconfig", kubeconfig) == 2
    assert "already exists" in capsys.readouterr().err
    assert _cli("status", "clean-flights", "-n", "ml", "--kubeconfig", kubeconfig, "--json") == 0
    import json

    assert json.loads(capsys.readouterr().out)["state"] == "SUBMITTED"
    fake_api.driver_logs["clean-flights"] = "hello from the driver\n"
    assert _cli("logs", file, "-n", "ml", "--kubeconfig", kubeconfig) == 0
    assert capsys.readouterr().out == "hello from the driver\n"
    assert _cli("delete", file, "-n", "ml", "--kubeconfig", kubeconfig) == 0
    assert capsys.readouterr().out.strip() == "deleted SparkApplication ml/clean-flights"
    assert _cli("status", "clean-flights", "-n", "ml", "--kubeconfig", kubeconfig) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_submit_of_an_invalid_file_sends_nothing(
    fake_api: FakeKubeApiServer,
    kubeconfig: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    app: dict,
) -> None:
    app["spec"]["sparkConf"]["spark.master"] = "local[*]"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(app))
    assert _cli("submit", str(bad), "--kubeconfig", kubeconfig) == 1
    assert "spark.master" in capsys.readouterr().err
    assert fake_api.requests == []


def test_the_namespace_given_at_submit_is_what_the_webhook_rule_checks(
    fake_api: FakeKubeApiServer, client: Any, clean_app: dict
) -> None:
    clean_app["spec"]["sparkConf"]["spark.kubernetes.namespace"] = "ml"
    kube.submit(clean_app, namespace="ml", client=client)
    with pytest.raises(ManifestInvalidError, match=r"spark\.kubernetes\.namespace"):
        kube.submit(clean_app, namespace="other", client=client)
    assert [r.query.get("dryRun") for r in _app_requests(fake_api)] == [["All"], None]
