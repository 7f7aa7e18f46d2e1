"""Package data resolves without the repository or the working directory; no CRD default."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkapps.paths import (
    chart_dir,
    chart_values_file,
    crds_dir,
    repo_root,
    shipped_manifest,
    shipped_manifest_names,
    shipped_manifests,
)

pytestmark = pytest.mark.k8s


def test_locations_do_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ICEFEED_CHART_DIR", raising=False)
    before = (repo_root(), chart_dir(), shipped_manifests(), str(chart_values_file()))
    monkeypatch.chdir(tmp_path)
    assert (repo_root(), chart_dir(), shipped_manifests(), str(chart_values_file())) == before
    assert (repo_root() / "pyproject.toml").is_file()
    assert (chart_dir() / "Chart.yaml").is_file()


def test_the_packaged_chart_values_are_the_charts_own_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """One source of truth: the package's values.yaml is the chart's (a link, not a copy)."""
    monkeypatch.delenv("ICEFEED_CHART_DIR", raising=False)
    packaged = Path(str(chart_values_file()))
    assert packaged.resolve() == (repo_root() / "helm" / "icefeed" / "values.yaml").resolve()
    assert packaged.read_text() == (chart_dir() / "values.yaml").read_text()


def test_shipped_manifests_are_package_data() -> None:
    names = shipped_manifest_names()
    assert names == sorted(p.stem for p in shipped_manifests())
    assert "clean-flights" in names
    found = shipped_manifest("clean-flights")
    assert found is not None and "kind: SparkApplication" in found.read_text()
    assert shipped_manifest("no-such-manifest") is None


def test_the_crd_folder_is_only_what_the_user_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ICEFEED_CRDS_DIR", raising=False)
    assert crds_dir() is None
    monkeypatch.setenv("ICEFEED_CRDS_DIR", str(tmp_path))
    assert crds_dir() == tmp_path.resolve()
