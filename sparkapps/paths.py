"""Where things live: the repository root, the operator CRDs, the Helm chart, shipped YAML.

Resolved relative to this package (never the working directory), because CI
clones the repository with ``shared/`` beside it and runs from anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The SparkApplication manifests shipped with icefeed, beside this module.
MANIFEST_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """Return the repository root (the folder holding ``sparkapps/``)."""
    return MANIFEST_DIR.parent


def crds_dir() -> Path:
    """Return the Spark operator CRD folder: ``$ICEFEED_CRDS_DIR`` or ``<repo>/../shared/crds``.

    The folder may not exist; callers that need it raise or skip with a reason.
    """
    override = os.environ.get("ICEFEED_CRDS_DIR")
    if override:
        return Path(override).expanduser().resolve()
    return (repo_root().parent / "shared" / "crds").resolve()


def chart_dir() -> Path:
    """Return the icefeed Helm chart folder: ``$ICEFEED_CHART_DIR`` or ``<repo>/helm/icefeed``."""
    override = os.environ.get("ICEFEED_CHART_DIR")
    if override:
        return Path(override).expanduser().resolve()
    return repo_root() / "helm" / "icefeed"


def shipped_manifests() -> list[Path]:
    """Return the SparkApplication YAML files shipped in ``sparkapps/``, sorted."""
    return sorted(MANIFEST_DIR.glob("*.yaml"))
