"""Read and write manifest files (YAML, one document each)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from jobs.errors import ManifestError


def load_manifest(path: str | Path) -> dict[str, Any]:
    """Return the single YAML document in ``path`` as a dict.

    Raises ManifestError if the file is missing, is not YAML, or does not hold
    exactly one mapping.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {file}: {exc.strerror}") from exc
    return parse_manifest(text, source=str(file))


def parse_manifest(text: str, *, source: str) -> dict[str, Any]:
    """Return the single YAML document in ``text`` (read from ``source``) as a dict.

    Raises ManifestError naming ``source`` if it is not YAML or does not hold
    exactly one mapping.
    """
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source} is not valid YAML: {exc}") from exc
    if len(documents) != 1 or not isinstance(documents[0], Mapping):
        raise ManifestError(f"{source} must hold exactly one YAML mapping (found {len(documents)})")
    return dict(documents[0])


def dump_manifest(manifest: Mapping[str, Any]) -> str:
    """Return ``manifest`` as block-style YAML, keys in their given order."""
    return yaml.safe_dump(dict(manifest), sort_keys=False, default_flow_style=False)
