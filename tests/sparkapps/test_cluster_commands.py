"""``icefeed sparkapp submit --update/--replace, list, events, logs -f, trigger`` and
``validate``'s skipped checks, through a kubeconfig pointing at the FAKE API server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from sparkapps.paths import MANIFEST_DIR
from tests.sparkapps.fake_apiserver import FakeKubeApiServer

pytestmark = pytest.mark.k8s

APP = str(MANIFEST_DIR / "clean-flights.yaml")
NIGHTLY = str(MANIFEST_DIR / "clean-flights-nightly.yaml")
Cli = Callable[..., int]


@pytest.fixture()
def cluster(kubeconfig: str) -> tuple[str, ...]:
    """The options that point a command at namespace ml of the FAKE server."""
    return ("-n", "ml", "--kubeconfig", kubeconfig)


def test_submit_update_and_replace(
    fake_api: FakeKubeApiServer,
    cluster: tuple[str, ...],
    sparkapp_cli: Cli,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sparkapp_cli("submit", APP, *cluster) == 0
    assert sparkapp_cli("submit", APP, *cluster) == 2
    assert "pass --update" in capsys.readouterr().err
    assert sparkapp_cli("submit", APP, *cluster, "--update") == 0
    assert capsys.readouterr().out == "unchanged SparkApplication ml/clean-flights\n"
    assert sparkapp_cli("submit", APP, *cluster, "--replace", "--json") == 0
    assert json.loads(capsys.readouterr().out)["action"] == "replaced"
    assert [r.method for r in fake_api.writes][-2:] == ["DELETE", "POST"]
    with pytest.raises(SystemExit):  # argparse: not both
        sparkapp_cli("submit", APP, *cluster, "--update", "--replace")


def test_list_prints_a_table_and_json(
    cluster: tuple[str, ...],
    kubeconfig: str,
    sparkapp_cli: Cli,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sparkapp_cli("list", *cluster) == 0
    assert "no SparkApplication in namespace ml" in capsys.readouterr().err
    assert sparkapp_cli("submit", APP, *cluster) == 0
    assert sparkapp_cli("submit", NIGHTLY, *cluster) == 0
    capsys.readouterr()
    assert sparkapp_cli("list", "-A", "--kubeconfig", kubeconfig) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "STATE", "DRIVERPOD"]
    assert row.split() == ["ml", "clean-flights", "NEW", "-"]  # the operator has not seen it
    assert sparkapp_cli("list", *cluster, "--scheduled", "--json") == 0
    (scheduled,) = json.loads(capsys.readouterr().out)
    assert (scheduled["name"], scheduled["schedule"]) == ("clean-flights-nightly", "0 2 * * *")


def test_events_and_follow_logs(
    fake_api: FakeKubeApiServer,
    cluster: tuple[str, ...],
    sparkapp_cli: Cli,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sparkapp_cli("submit", APP, *cluster) == 0
    pipe = fake_api.log_pipe("clean-flights")
    pipe.write("starting\n")
    writer = threading.Thread(target=lambda: (pipe.write("rows_written: 42\n"), pipe.close()))
    fake_api.on_follow = writer.start  # more is written once the client follows
    assert sparkapp_cli("logs", APP, *cluster, "-f", "--poll", "0.01") == 0
    writer.join(timeout=10)
    assert capsys.readouterr().out.endswith("starting\nrows_written: 42\n")
    assert sparkapp_cli("events", "clean-flights", *cluster) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TIME", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert [line.split()[2] for line in lines[1:]] == [
        "SparkApplicationSubmitted",
        "SparkDriverRunning",
        "Started",  # the driver pod's
        "SparkApplicationCompleted",
    ]


def test_trigger_wait_runs_the_schedule_now(
    fake_api: FakeKubeApiServer,
    cluster: tuple[str, ...],
    sparkapp_cli: Cli,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sparkapp_cli("submit", NIGHTLY, *cluster) == 0
    capsys.readouterr()
    assert sparkapp_cli("trigger", "clean-flights-nightly", *cluster, "--wait", "--poll", "0") == 0
    first, *states = capsys.readouterr().out.splitlines()
    run = first.split()[2]
    assert first == f"triggered SparkApplication {run} from clean-flights-nightly"
    assert states[-1] == f"{run}: COMPLETED"
    assert sparkapp_cli("trigger", "nope", *cluster) == 2
    assert "not found" in capsys.readouterr().err


def test_validate_without_any_crds_runs_the_rest_and_names_what_it_skipped(
    tmp_path: Path,
    sparkapp_cli: Cli,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ICEFEED_CRDS_DIR", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert sparkapp_cli("validate", APP) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().endswith("ok (some checks skipped)")
    assert "schema and unknown-field checks skipped" in captured.err
    assert "--crds" in captured.err
    assert sparkapp_cli("validate", APP, "--json") == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["skipped"][0]["checks"] == ["schema", "unknown-field"]


def test_validate_with_a_named_crd_folder_skips_nothing(
    crds: Path,
    sparkapp_cli: Cli,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ICEFEED_CRDS_DIR", raising=False)
    assert sparkapp_cli("validate", APP, "--crds", str(crds)) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().endswith(": ok") and captured.err == ""
