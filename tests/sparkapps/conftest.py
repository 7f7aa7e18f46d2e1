"""Fixtures of the sparkapps tests: the operator CRDs (skip only if absent) and manifests.

The CRDs are reference data outside the repository (never vendored): the tests
read them from ``$ICEFEED_CRDS_DIR``, which defaults here to ``shared/crds``
beside the repository (CI's layout). icefeed itself has no such default.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sparkapps.manifests import load_manifest
from sparkapps.paths import MANIFEST_DIR, repo_root
from tests.sparkapps.fake_apiserver import FakeKubeApiServer

#: the start of the skip reason, counted by the terminal summary below
CRDS_MISSING = "Spark operator CRDs not found"

#: the operator's CRD folder the tests use; ``$ICEFEED_CRDS_DIR`` is set to it only when
#: it exists, so that without it the code under test meets what a user without CRDs meets
CRDS_DIR = Path(
    os.environ.get("ICEFEED_CRDS_DIR") or repo_root().parent / "shared" / "crds"
).resolve()
if CRDS_DIR.is_dir():
    os.environ.setdefault("ICEFEED_CRDS_DIR", str(CRDS_DIR))


@pytest.fixture(scope="session")
def crds() -> Path:
    """Return the operator CRD folder; skip (with the reason) only when it is absent."""
    if not CRDS_DIR.is_dir():
        pytest.skip(
            f"{CRDS_MISSING} at {CRDS_DIR} "
            "(set ICEFEED_CRDS_DIR or put shared/crds beside the repository)"
        )
    return CRDS_DIR


@pytest.fixture()
def clean_app() -> dict[str, Any]:
    """A deep copy of the shipped clean-flights SparkApplication."""
    return copy.deepcopy(load_manifest(MANIFEST_DIR / "clean-flights.yaml"))


@pytest.fixture()
def app(crds: Path, clean_app: dict[str, Any]) -> dict[str, Any]:
    """``clean_app`` for tests that validate it against the CRDs (skipped without them)."""
    return clean_app


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One loud line when tests skipped because the operator's CRDs are absent."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if CRDS_MISSING in str(getattr(report, "longrepr", ""))
    ]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} tests SKIPPED: {CRDS_MISSING} at {CRDS_DIR} "
            "(set ICEFEED_CRDS_DIR or put shared/crds beside the repository)",
            yellow=True,
            bold=True,
        )


# --- the FAKE Kubernetes API server and clients of it ----------------------------


@pytest.fixture()
def fake_api() -> Iterator[FakeKubeApiServer]:
    """The FAKE API server, running for one test; asserts nothing unexpected was sent."""
    with FakeKubeApiServer() as server:
        yield server
    assert server.unexpected == []


@pytest.fixture()
def client(fake_api: FakeKubeApiServer) -> Any:
    """The real kubernetes ApiClient pointed at the FAKE server."""
    from kubernetes import client as k8s

    configuration = k8s.Configuration(host=fake_api.host)
    api_client = k8s.ApiClient(configuration)
    yield api_client
    api_client.close()


@pytest.fixture()
def kubeconfig(fake_api: FakeKubeApiServer, tmp_path: Path) -> str:
    """A kubeconfig file whose current context is the FAKE server."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": fake_api.host}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        "current-context": "fake",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture()
def sparkapp_cli() -> Callable[..., int]:
    """``icefeed sparkapp ARGS...`` in this process; returns the exit code."""
    from sparkapps.cli import main

    return lambda *args: main(["sparkapp", *args])
