"""Validation of a Kubeflow Trainer v2 ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``).

The schema is the pydantic models of ``kubeflow-trainer-api`` (generated from the
Trainer's OpenAPI schema, pinned in the ``k8s`` extra), not the cluster's CRD: icefeed
validates offline. Three layers, each a pure function of the manifest:

1. the models' types and required fields (``model_validate``);
2. unknown field names: the generated models ignore extra keys, so a misspelt
   field would pass (1); :func:`unknown_model_fields` walks the manifest against
   the models' field aliases and reports every name they do not declare;
3. the pod parts (the trainer's container, each runtime patch's pod template)
   against Kubernetes' own schemas with ``kubernetes-validate``, like every pod
   template icefeed renders.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any

from jobs.extras import require
from sparkapps.problems import Check, Problem

GROUP = "trainer.kubeflow.org"
API_VERSION = f"{GROUP}/v1alpha1"
KIND = "TrainJob"
#: the name of the trainer's container in the Trainer's runtimes
TRAINER_CONTAINER = "node"


def is_trainjob(manifest: Mapping[str, Any]) -> bool:
    """Return True when ``manifest`` is a Kubeflow Trainer TrainJob (any version).

    Args:
        manifest: a parsed manifest of any kind.

    Returns:
        True for kind TrainJob in the trainer.kubeflow.org group.
    """
    group = str(manifest.get("apiVersion", "")).rpartition("/")[0]
    return manifest.get("kind") == KIND and group == GROUP


def trainjob_problems(manifest: Mapping[str, Any]) -> list[Problem]:
    """Check a TrainJob against the Trainer's Python models and Kubernetes' pod schemas.

    Args:
        manifest: the parsed TrainJob.

    Returns:
        Every problem found (empty when it is valid).

    Raises:
        MissingExtraError: kubeflow-trainer-api or kubernetes-validate is not installed.
    """
    if manifest.get("apiVersion") != API_VERSION:
        return [
            Problem(
                path="apiVersion",
                message=f"{manifest.get('apiVersion')!r} is not {API_VERSION!r}",
                hint=f"the Kubeflow Trainer v2 serves {API_VERSION}",
                check=Check.MANIFEST,
            )
        ]
    models = require("kubeflow_trainer_api.models", "k8s")
    model = models.TrainerV1alpha1TrainJob
    problems = model_problems(manifest, model)
    problems += unknown_model_fields(manifest, model)
    problems += pod_problems(manifest)
    return problems


def model_problems(manifest: Mapping[str, Any], model: Any) -> list[Problem]:
    """Return the type and required-field errors of ``model.from_dict(manifest)``.

    The generated ``from_dict`` builds nested models one by one (and the oneOf
    wrappers such as Quantity), so it stops at the first wrong model: the
    problem names that model and the field in it.

    Args:
        manifest: the parsed TrainJob.
        model: the pydantic model class of the whole TrainJob.

    Returns:
        The problems (Check.SCHEMA) of the first model that refused its part.
    """
    pydantic = require("pydantic", "k8s")
    hint = f"checked against kubeflow-trainer-api's {model.__name__} (not the cluster's CRD)"
    try:
        model.from_dict(dict(manifest))
    except pydantic.ValidationError as exc:
        return [
            Problem(
                path=_dotted(error["loc"]),
                message=f"{error['msg']} (in {exc.title})",
                hint=hint,
                check=Check.SCHEMA,
            )
            for error in exc.errors()
        ]
    except ValueError as exc:  # a oneOf wrapper (e.g. a Quantity) matched none of its types
        return [Problem(path="", message=str(exc).split("\n")[0], hint=hint, check=Check.SCHEMA)]
    return []


def unknown_model_fields(value: Any, model: Any, path: str = "") -> list[Problem]:
    """Return a problem for every key of ``value`` that pydantic ``model`` does not declare.

    Args:
        value: a parsed mapping (or anything: non-mappings yield nothing).
        model: a pydantic model class whose field aliases are the wire names.
        path: the dotted path of ``value`` (for the problems).

    Returns:
        One problem per unknown key, with the closest known name as a hint.
    """
    if not isinstance(value, Mapping):
        return []
    fields = {info.alias or name: info.annotation for name, info in model.model_fields.items()}
    problems: list[Problem] = []
    for key, child in value.items():
        child_path = f"{path}.{key}" if path else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            problems.append(
                Problem(
                    path=child_path,
                    message=f"unknown field {key!r}",
                    hint=f"did you mean {close[0]!r}?"
                    if close
                    else "known fields here: " + ", ".join(sorted(fields)),
                    check=Check.UNKNOWN_FIELD,
                )
            )
            continue
        problems += _walk(child, fields[key], child_path)
    return problems


def _walk(value: Any, annotation: Any, path: str) -> list[Problem]:
    """Descend into ``value`` along a field's type (Optional, List, Dict, model)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        problems: list[Problem] = []
        for arg in args:
            if arg is not type(None):
                problems += _walk(value, arg, path)
        return problems
    if origin is list and args and isinstance(value, list):
        out: list[Problem] = []
        for index, item in enumerate(value):
            out += _walk(item, args[0], f"{path}[{index}]")
        return out
    if origin is dict and len(args) == 2 and isinstance(value, Mapping):
        out = []
        for key, item in value.items():
            out += _walk(item, args[1], f"{path}.{key}")
        return out
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        if "actual_instance" in annotation.model_fields:
            return []  # a oneOf wrapper of scalars (Quantity, IntOrString): no field names
        return unknown_model_fields(value, annotation, path)
    return []


def pod_problems(manifest: Mapping[str, Any]) -> list[Problem]:
    """Check the TrainJob's pod parts as Pods against Kubernetes' schema (strict).

    The parts: the trainer's container (image, command, args, env, resourcesPerNode
    as resources) and the pod template of every replicated job a runtime patch patches.

    Args:
        manifest: the parsed TrainJob.

    Returns:
        The problems (Check.KUBERNETES) with their paths in the TrainJob.
    """
    from sparkapps.validation import validate_core_object

    spec = manifest.get("spec")
    if not isinstance(spec, Mapping):
        return []
    problems: list[Problem] = []
    trainer = spec.get("trainer")
    if isinstance(trainer, Mapping):
        container = {"name": TRAINER_CONTAINER}
        for field in ("image", "command", "args", "env"):
            if field in trainer:
                container[field] = trainer[field]
        if "resourcesPerNode" in trainer:
            container["resources"] = trainer["resourcesPerNode"]
        pod = {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [container]}}
        problems += validate_core_object(pod, path="spec.trainer")
    for path, template in _patched_pod_templates(spec):
        pod = {"apiVersion": "v1", "kind": "Pod", **template}
        problems += validate_core_object(pod, path=path)
    return problems


def _patched_pod_templates(spec: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(path, pod template) of every replicated job each runtime patch patches."""
    found = []
    for i, patch in enumerate(spec.get("runtimePatches") or []):
        jobset = _get(patch, "trainingRuntimeSpec", "template", "spec")
        for j, job in enumerate(_get(jobset, "replicatedJobs") or []):
            template = _get(job, "template", "spec", "template")
            if isinstance(template, Mapping):
                path = (
                    f"spec.runtimePatches[{i}].trainingRuntimeSpec.template.spec"
                    f".replicatedJobs[{j}].template.spec.template"
                )
                found.append((path, template))
    return found


def _get(node: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _dotted(parts: typing.Sequence[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
