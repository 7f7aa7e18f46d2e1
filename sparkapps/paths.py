"""Where things live: package data (shipped manifests, the chart's values) and the checkout.

The shipped SparkApplication manifests (``sparkapps/*.yaml``) and the Helm
chart's ``values.yaml`` are package data, read with :mod:`importlib.resources`,
so ``icefeed sparkapp render`` works from an installed wheel in any folder.
``sparkapps/chart/values.yaml`` is a symbolic link to ``helm/icefeed/values.yaml``
(one source of truth): setuptools copies the file it points at into the wheel.

The operator's CRDs are never package data: see :mod:`sparkapps.crds`.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

#: The package whose data this module finds.
PACKAGE = "sparkapps"

#: The package folder on disk (the shipped manifests sit in it). In a checkout it is
#: the repository's ``sparkapps/``; from a wheel, the installed package.
MANIFEST_DIR = Path(__file__).resolve().parent

#: The chart's values inside the package (a link to ``helm/icefeed/values.yaml`` in a checkout).
CHART_VALUES = "chart/values.yaml"


def package_files() -> Traversable:
    """Return the root of the ``sparkapps`` package data."""
    return resources.files(PACKAGE)


def shipped_manifest(name: str) -> Traversable | None:
    """Return the shipped manifest ``name`` (``clean-flights``), or None if there is none."""
    file = package_files() / f"{name}.yaml"
    return file if file.is_file() else None


def shipped_manifest_names() -> list[str]:
    """Return the names of the shipped manifests (file stems), sorted."""
    return sorted(
        item.name.removesuffix(".yaml")
        for item in package_files().iterdir()
        if item.name.endswith(".yaml") and item.is_file()
    )


def chart_values_file() -> Traversable:
    """Return the chart values to render: ``$ICEFEED_CHART_DIR/values.yaml`` or the packaged file.

    The file may be missing only if ``ICEFEED_CHART_DIR`` names a folder without it;
    callers raise then.
    """
    override = os.environ.get("ICEFEED_CHART_DIR")
    if override:
        return Path(override).expanduser().resolve() / "values.yaml"
    return package_files() / CHART_VALUES


def repo_root() -> Path:
    """Return the folder holding the ``sparkapps`` package (a checkout's root, or site-packages)."""
    return MANIFEST_DIR.parent


def crds_dir() -> Path | None:
    """Return the CRD folder the user named with ``$ICEFEED_CRDS_DIR``, or None."""
    override = os.environ.get("ICEFEED_CRDS_DIR")
    return Path(override).expanduser().resolve() if override else None


def chart_dir() -> Path:
    """Return a checkout's Helm chart folder: ``$ICEFEED_CHART_DIR`` or ``<repo>/helm/icefeed``.

    Only the repository has the whole chart (its tests and ``helm`` use it); the
    CLI reads only :func:`chart_values_file`.
    """
    override = os.environ.get("ICEFEED_CHART_DIR")
    if override:
        return Path(override).expanduser().resolve()
    return repo_root() / "helm" / "icefeed"


def shipped_manifests() -> list[Path]:
    """Return the shipped SparkApplication YAML files on disk, sorted."""
    return [MANIFEST_DIR / f"{name}.yaml" for name in shipped_manifest_names()]
