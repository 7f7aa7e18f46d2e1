"""``validate(manifest) -> list[Problem]``: everything we can check before a cluster sees it.

Four layers, each a pure function of the manifest (plus read-only schemas):

1. the operator CRD's OpenAPI schema (jsonschema Draft 7);
2. unknown field names — the CRD has no ``additionalProperties: false``, so a
   typo such as ``executor.ports`` passes (1); we walk the schema strictly,
   skipping only the schemaless pod templates ``driver.template``/``executor.template``;
3. the operator webhook's rules the schema does not carry (``sparkConf`` keys
   it refuses, see the CRD README);
4. the pod templates, and any core object (Service, Role, ...), against
   Kubernetes' own schemas with ``kubernetes-validate`` (offline, strict).

Layers 1 and 2 need the CRD's schema (:mod:`sparkapps.crds`: a named folder or
the cluster). Without one they are skipped, and :func:`validation_report` says
so in ``skipped`` (:func:`validate` logs a warning): never a silent pass.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobs.errors import ManifestError
from jobs.extras import require
from sparkapps.crds import API_VERSION, CrdSource, CrdUnavailableError, Kind, crd_source
from sparkapps.problems import Check, Problem
from sparkapps.trainjob import is_trainjob, trainjob_problems

log = logging.getLogger(__name__)

#: Kubernetes version whose schemas core objects and pod templates are checked against.
DEFAULT_KUBERNETES_VERSION = "1.32"

#: ``sparkConf`` keys the operator's webhook (v2.5.2) refuses: set them through the spec.
FORBIDDEN_SPARK_CONF: dict[str, str] = {
    "spark.master": "the operator sets the master; remove it",
    "spark.kubernetes.container.image": "set spec.image instead",
    "spark.kubernetes.driver.container.image": "set spec.driver.image (or spec.image) instead",
    "spark.kubernetes.executor.container.image": "set spec.executor.image (or spec.image) instead",
    "spark.kubernetes.authenticate.driver.serviceAccountName": (
        "set spec.driver.serviceAccount instead"
    ),
    "spark.kubernetes.authenticate.executor.serviceAccountName": (
        "set spec.executor.serviceAccount instead"
    ),
}
_OAUTH = re.compile(r"^spark\.kubernetes\.authenticate\..*oauthToken", re.IGNORECASE)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_POD_TEMPLATES = ("driver", "executor")


def kubernetes_version() -> str:
    """Return the Kubernetes version to validate against (``$ICEFEED_K8S_VERSION`` or 1.32).

    kubernetes-validate 1.37 ships schemas for 1.25 to 1.37 offline; 1.32 is a
    version every supported managed Kubernetes still runs.
    """
    return os.environ.get("ICEFEED_K8S_VERSION", DEFAULT_KUBERNETES_VERSION)


#: the checks that need the operator's CRD schema
CRD_CHECKS = (Check.SCHEMA, Check.UNKNOWN_FIELD)


@dataclass(frozen=True, kw_only=True)
class SkippedCheck:
    """Checks that did not run on a manifest, and why (e.g. no CRD schema to run them with)."""

    checks: tuple[Check, ...]
    reason: str

    def __str__(self) -> str:
        names = " and ".join(check.value for check in self.checks)
        return f"{names} checks skipped: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (for ``--json``)."""
        return {"checks": [check.value for check in self.checks], "reason": self.reason}


@dataclass(frozen=True, kw_only=True)
class ValidationReport:
    """What :func:`validation_report` found (``problems``) and could not check (``skipped``)."""

    problems: list[Problem] = field(default_factory=list)
    skipped: list[SkippedCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found (skipped checks do not count as problems)."""
        return not self.problems


def validation_report(
    manifest: Mapping[str, Any], *, crds: CrdSource | None = None
) -> ValidationReport:
    """Check ``manifest`` with every layer that can run; report problems and skipped checks.

    SparkApplication and ScheduledSparkApplication go through all four layers;
    a Kubeflow Trainer TrainJob through :mod:`sparkapps.trainjob` (the Trainer's
    Python models, not a CRD); any other kind against Kubernetes' own schema.

    Args:
        manifest: the parsed manifest.
        crds: where the CRD schemas come from (default: :func:`sparkapps.crds.crd_source`,
            i.e. ``$ICEFEED_CRDS_DIR`` if set).

    Returns:
        The problems found (each with its path, message and check) and the
        checks skipped for want of a schema, with the reason.

    Raises:
        ManifestError: a named CRD folder lacks the CRD file.
    """
    if not isinstance(manifest, Mapping):
        problem = Problem(path="", message="a manifest must be a mapping", check=Check.MANIFEST)
        return ValidationReport(problems=[problem])
    kind_name = manifest.get("kind")
    if kind_name not in {k.value for k in Kind}:
        if not kind_name or not manifest.get("apiVersion"):
            problem = Problem(
                path="kind" if not kind_name else "apiVersion",
                message="missing",
                hint="every manifest needs apiVersion and kind",
                check=Check.MANIFEST,
            )
            return ValidationReport(problems=[problem])
        if is_trainjob(manifest):
            return ValidationReport(problems=trainjob_problems(manifest))
        return ValidationReport(problems=validate_core_object(manifest))
    kind = Kind.parse(kind_name)
    problems = list(document_problems(manifest))
    skipped = []
    try:
        crd = (crds or crd_source()).load(kind)
    except CrdUnavailableError as exc:
        skipped.append(SkippedCheck(checks=CRD_CHECKS, reason=str(exc)))
    else:
        problems += schema_problems(manifest, crd.schema)
        problems += unknown_field_problems(manifest, crd.schema)
    app_spec = _application_spec(manifest, kind)
    prefix = "spec.template" if kind is Kind.SCHEDULED_SPARK_APPLICATION else "spec"
    if isinstance(app_spec, Mapping):
        namespace = (manifest.get("metadata") or {}).get("namespace")
        problems += webhook_problems(app_spec, namespace=namespace, prefix=prefix)
        problems += pod_template_problems(app_spec, prefix=prefix)
    return ValidationReport(problems=problems, skipped=skipped)


def validate(manifest: Mapping[str, Any], *, crds: CrdSource | None = None) -> list[Problem]:
    """Return every problem found in ``manifest`` (empty when it is valid).

    As :func:`validation_report`, with each skipped check logged as a warning.

    Args:
        manifest: the parsed manifest.
        crds: where the CRD schemas come from (default: ``$ICEFEED_CRDS_DIR`` if set).

    Returns:
        The problems found, each with its path, message and check; empty if valid.

    Raises:
        ManifestError: a named CRD folder lacks the CRD file.
    """
    report = validation_report(manifest, crds=crds)
    for skipped in report.skipped:
        log.warning("%s", skipped)
    return report.problems


def _application_spec(manifest: Mapping[str, Any], kind: Kind) -> Any:
    spec = manifest.get("spec") or {}
    if kind is Kind.SCHEDULED_SPARK_APPLICATION and isinstance(spec, Mapping):
        return spec.get("template") or {}
    return spec


def document_problems(manifest: Mapping[str, Any]) -> Iterator[Problem]:
    """Yield the problems of ``apiVersion`` and ``metadata.name`` (needs no CRD).

    Args:
        manifest: A SparkApplication or ScheduledSparkApplication.

    Returns:
        An iterator of problems (empty when both are valid).
    """
    if manifest.get("apiVersion") != API_VERSION:
        yield Problem(
            path="apiVersion",
            message=f"{manifest.get('apiVersion')!r} is not {API_VERSION!r}",
            hint=f"the Spark operator v2 serves {API_VERSION}",
            check=Check.MANIFEST,
        )
    metadata = manifest.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    if not isinstance(name, str) or not name:
        yield Problem(
            path="metadata.name",
            message="missing",
            hint="name the application",
            check=Check.MANIFEST,
        )
    elif len(name) > 63 or not _DNS_LABEL.match(name):
        yield Problem(
            path="metadata.name",
            message=f"{name!r} is not a DNS-1123 label",
            hint="lowercase letters, digits and '-', at most 63 characters "
            "(the driver pod and service names derive from it)",
            check=Check.MANIFEST,
        )


def _dotted(parts: Sequence[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def schema_problems(manifest: Mapping[str, Any], schema: Mapping[str, Any]) -> list[Problem]:
    """Check ``manifest`` against a CRD's OpenAPI schema with jsonschema's Draft7Validator."""
    jsonschema = require("jsonschema", "k8s")
    validator = jsonschema.Draft7Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path)):
        description = str(error.schema.get("description", "")) if error.schema else ""
        hint = description.split("\n")[0][:160]
        if error.validator == "enum":
            hint = "one of " + ", ".join(map(str, error.validator_value))
        problems.append(
            Problem(
                path=_dotted(list(error.absolute_path)),
                message=error.message,
                hint=hint,
                check=Check.SCHEMA,
            )
        )
    return problems


def unknown_field_problems(value: Any, schema: Mapping[str, Any], path: str = "") -> list[Problem]:
    """Return a problem for every field name of ``value`` that ``schema`` does not declare.

    Objects with ``properties`` are closed; ``additionalProperties`` maps
    (labels, sparkConf) are open but their values are walked; nodes marked
    ``x-kubernetes-preserve-unknown-fields`` (the pod templates) and untyped
    objects (metadata) are skipped here and checked elsewhere.
    """
    problems: list[Problem] = []
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return problems
    if isinstance(value, Mapping):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key, child in value.items():
            child_path = f"{path}.{key}" if path else str(key)
            if properties is not None and key in properties:
                problems += unknown_field_problems(child, properties[key], child_path)
            elif properties is not None and not additional:
                close = difflib.get_close_matches(str(key), list(properties), n=1)
                hint = f"did you mean {close[0]!r}?" if close else ""
                known = ", ".join(sorted(properties))
                problems.append(
                    Problem(
                        path=child_path,
                        message=f"unknown field {key!r}",
                        hint=hint or f"known fields here: {known}",
                        check=Check.UNKNOWN_FIELD,
                    )
                )
            elif isinstance(additional, Mapping):
                problems += unknown_field_problems(child, additional, child_path)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            problems += unknown_field_problems(item, schema["items"], f"{path}[{index}]")
    return problems


def webhook_problems(
    app_spec: Mapping[str, Any], *, namespace: str | None, prefix: str = "spec"
) -> list[Problem]:
    """Return the ``sparkConf`` keys the operator's admission webhook (v2.5.2) would refuse."""
    spark_conf = app_spec.get("sparkConf") or {}
    if not isinstance(spark_conf, Mapping):
        return []
    problems = []
    for key, value in spark_conf.items():
        path = f"{prefix}.sparkConf[{key}]"
        if key in FORBIDDEN_SPARK_CONF:
            problems.append(
                Problem(
                    path=path,
                    message=f"the operator webhook refuses sparkConf key {key!r}",
                    hint=FORBIDDEN_SPARK_CONF[key],
                    check=Check.WEBHOOK,
                )
            )
        elif _OAUTH.match(str(key)):
            problems.append(
                Problem(
                    path=path,
                    message="the operator webhook refuses OAuth token settings in sparkConf",
                    hint="the driver authenticates with its service account; remove the key "
                    "(and never put a token in a manifest)",
                    check=Check.WEBHOOK,
                )
            )
        elif key == "spark.kubernetes.namespace" and value != (namespace or value):
            problems.append(
                Problem(
                    path=path,
                    message=f"namespace {value!r} differs from the application's "
                    f"namespace {namespace!r}",
                    hint="remove the key: the application runs in metadata.namespace",
                    check=Check.WEBHOOK,
                )
            )
        elif key == "spark.kubernetes.namespace" and namespace is None:
            problems.append(
                Problem(
                    path=path,
                    message="spark.kubernetes.namespace is set but metadata.namespace is not",
                    hint="remove the key and set metadata.namespace (or --namespace)",
                    check=Check.WEBHOOK,
                )
            )
    return problems


def pod_template_problems(app_spec: Mapping[str, Any], *, prefix: str = "spec") -> list[Problem]:
    """Check ``driver.template``/``executor.template`` as Pods against Kubernetes' schema."""
    problems = []
    for role in _POD_TEMPLATES:
        section = app_spec.get(role)
        template = section.get("template") if isinstance(section, Mapping) else None
        if template is None:
            continue
        path = f"{prefix}.{role}.template"
        if not isinstance(template, Mapping):
            problems.append(Problem(path=path, message="must be a mapping", check=Check.KUBERNETES))
            continue
        pod = {"apiVersion": "v1", "kind": "Pod", **template}
        problems += validate_core_object(pod, path=path)
    return problems


def validate_core_object(obj: Mapping[str, Any], *, path: str = "") -> list[Problem]:
    """Check a Kubernetes core object against the official schema (strict: no unknown fields)."""
    kv = require("kubernetes_validate", "k8s")
    version = kubernetes_version()
    try:
        kv.validate(dict(obj), version, strict=True)
    except kv.ValidationError as exc:
        where = _dotted(list(exc.path))
        full = f"{path}.{where}" if path and where else (path or where)
        return [
            Problem(
                path=full,
                message=exc.message,
                hint=f"checked against Kubernetes {exc.version} "
                f"({obj.get('apiVersion')} {obj.get('kind')})",
                check=Check.KUBERNETES,
            )
        ]
    except kv.utils.VersionNotSupportedError as exc:
        versions = kv.utils.all_versions()
        raise ManifestError(
            f"Kubernetes version {version!r} has no offline schema; "
            f"set ICEFEED_K8S_VERSION to one of {versions[0]}..{versions[-1]}"
        ) from exc
    except kv.SchemaNotFoundError as exc:
        group = str(obj.get("apiVersion", "")).rpartition("/")[0]
        if "." in group and not group.endswith(".k8s.io"):
            # A third-party CRD (e.g. a prometheus-operator ServiceMonitor): no
            # offline schema exists, so it is not checked rather than refused.
            log.warning("no offline schema for %s %s; not validated", group, obj.get("kind"))
            return []
        return [
            Problem(
                path=path or "kind",
                message=exc.message,
                hint="check apiVersion and kind",
                check=Check.KUBERNETES,
            )
        ]
    return []
