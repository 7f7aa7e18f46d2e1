"""``render(template, values) -> dict``: a SparkApplication with deployment values applied.

Values have the shape of the Helm chart's ``values.yaml`` (``image.repository``,
``image.tag``, ``image.pullPolicy``, ``sparkVersion``, ``serviceAccount.name``,
``catalog.existingSecret``, ``s3.existingSecret``, ``feeder.token.existingSecret``
or ``feeder.token.secretName``)
plus ``namespace``, ``name`` and ``set`` (dotted-path overrides, e.g.
``{"spec.executor.instances": 4}``). The chart's ``values.yaml`` is the one
source of the defaults: a shipped manifest rendered with no values is itself
(a test pins that), and the chart renders the same settings.

Pure: no cluster, no Spark. Raises ManifestError on an unknown template or a
malformed value.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from jobs.errors import ManifestError
from sparkapps.crds import Kind
from sparkapps.manifests import load_manifest, parse_manifest
from sparkapps.paths import chart_values_file, shipped_manifest, shipped_manifest_names


def chart_defaults() -> dict[str, Any]:
    """Return the Helm chart's ``values.yaml`` (package data, or ``$ICEFEED_CHART_DIR``'s).

    Raises:
        ManifestError: the file is missing (``ICEFEED_CHART_DIR`` names a folder
            without it, or the installation is broken) or is not a YAML mapping.
    """
    file = chart_values_file()
    if not file.is_file():
        raise ManifestError(
            f"the chart values {file} do not exist; unset ICEFEED_CHART_DIR or point it at a "
            "folder holding the chart's values.yaml (or reinstall icefeed)"
        )
    values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise ManifestError(f"the chart values {file} must hold a mapping")
    return values


def deep_merge(
    base: Mapping[str, Any], override: Mapping[str, Any], *, null_removes: bool = True
) -> dict[str, Any]:
    """Return ``base`` with ``override`` merged in (mappings merge, anything else replaces).

    As in Helm, a None (YAML ``null``) in ``override`` removes the key; with
    ``null_removes=False`` it is kept (to layer user values files before the chart's
    defaults, where it then removes the default).
    """
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if value is None and null_removes:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value, null_removes=null_removes)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve_template(template: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """Return the manifest named by ``template``: a mapping, a YAML path or a shipped name."""
    if isinstance(template, Mapping):
        return copy.deepcopy(dict(template))
    path = Path(template)
    if path.is_file():
        return load_manifest(path)
    shipped = shipped_manifest(str(template)) if not path.suffix else None
    if shipped is None:
        names = ", ".join(shipped_manifest_names())
        raise ManifestError(f"no manifest {str(template)!r}; give a YAML path or one of: {names}")
    return parse_manifest(shipped.read_text(encoding="utf-8"), source=f"shipped {shipped.name}")


def _get(values: Mapping[str, Any], *keys: str) -> Any:
    node: Any = values
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _rename_secret_refs(node: Any, renames: Mapping[str, str]) -> None:
    if isinstance(node, dict):
        for key, child in node.items():
            if key in ("secretRef", "secretKeyRef") and isinstance(child, dict):
                name = child.get("name")
                if isinstance(name, str) and name in renames:
                    child["name"] = renames[name]
            else:
                _rename_secret_refs(child, renames)
    elif isinstance(node, list):
        for child in node:
            _rename_secret_refs(child, renames)


def secret_names(values: Mapping[str, Any]) -> tuple[str, str, str]:
    """Return the (catalog, S3, feeder token) Secret names that ``values`` select."""
    token = _get(values, "feeder", "token", "existingSecret") or _get(
        values, "feeder", "token", "secretName"
    )
    return (
        str(_get(values, "catalog", "existingSecret") or ""),
        str(_get(values, "s3", "existingSecret") or ""),
        str(token or ""),
    )


def set_path(manifest: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``manifest[a][b][c] = value`` for ``dotted == "a.b.c"``, creating mappings."""
    keys = dotted.split(".")
    node: Any = manifest
    for key in keys[:-1]:
        if not isinstance(node, dict):
            raise ManifestError(f"set {dotted}: {key!r} is not inside a mapping")
        node = node.setdefault(key, {})
    if not isinstance(node, dict):
        raise ManifestError(f"set {dotted}: the parent is not a mapping")
    node[keys[-1]] = value


def render(
    template: Mapping[str, Any] | str | Path, values: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return ``template`` with the chart defaults and ``values`` applied (a new dict).

    Args:
        template: a manifest mapping, a YAML file or a shipped manifest name
            (``"clean-flights"``).
        values: chart-style values (image, namespace, sparkConf, ...) laid over the
            chart's defaults.

    Returns:
        The rendered manifest; ``template`` is not modified.

    Raises:
        ManifestError: an unknown template, a kind other than
            (Scheduled)SparkApplication, or a malformed ``set`` path.
    """
    manifest = resolve_template(template)
    kind = Kind.parse(manifest.get("kind"))
    defaults = chart_defaults()
    merged = deep_merge(defaults, values or {})
    metadata = manifest.setdefault("metadata", {})
    if merged.get("name"):
        metadata["name"] = str(merged["name"])
    if merged.get("namespace"):
        metadata["namespace"] = str(merged["namespace"])
    spec = manifest.setdefault("spec", {})
    app = spec.setdefault("template", {}) if kind is Kind.SCHEDULED_SPARK_APPLICATION else spec
    repository, tag = _get(merged, "image", "repository"), _get(merged, "image", "tag")
    if repository:
        app["image"] = f"{repository}:{tag}" if tag else str(repository)
    if _get(merged, "image", "pullPolicy"):
        app["imagePullPolicy"] = str(_get(merged, "image", "pullPolicy"))
    if merged.get("sparkVersion"):
        app["sparkVersion"] = str(merged["sparkVersion"])
    account = _get(merged, "serviceAccount", "name")
    if account and isinstance(app.get("driver"), dict):
        app["driver"]["serviceAccount"] = str(account)
    renames = {}
    for old, new in zip(secret_names(defaults), secret_names(merged), strict=True):
        if old and new and old != new:
            renames[old] = new
    _rename_secret_refs(app, renames)
    for dotted, value in (merged.get("set") or {}).items():
        set_path(manifest, str(dotted), value)
    return manifest
