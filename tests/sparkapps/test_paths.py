"""Locations resolve relative to the repository, never the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkapps.paths import chart_dir, crds_dir, repo_root, shipped_manifests

pytestmark = pytest.mark.k8s


def test_locations_do_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ICEFEED_CRDS_DIR", raising=False)
    before = (repo_root(), crds_dir(), chart_dir(), shipped_manifests())
    monkeypatch.chdir(tmp_path)
    assert (repo_root(), crds_dir(), chart_dir(), shipped_manifests()) == before
    assert crds_dir() == (repo_root().parent / "shared" / "crds").resolve()
    assert (repo_root() / "pyproject.toml").is_file()
    assert (chart_dir() / "Chart.yaml").is_file()


def test_the_crd_folder_can_be_overridden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICEFEED_CRDS_DIR", str(tmp_path))
    assert crds_dir() == tmp_path.resolve()
