"""``run-local``: run a SparkApplication manifest on this machine with ``spark-submit``.

:func:`plan_local_run` (pure) translates the manifest into a
``spark-submit --master local[N]`` command line and environment:

- ``mainApplicationFile`` / ``mainClass``, ``arguments`` → the application and its args;
- ``sparkConf`` → ``--conf`` (``spark.kubernetes.*`` dropped: no meaning here);
- ``hadoopConf`` → ``--conf spark.hadoop.*``;
- ``deps`` → ``--jars --files --py-files --archives --packages --repositories``;
- driver/executor ``env`` (plain values) and ``envVars`` → the environment;
- resources → ``local[min(instances × executor cores, CPUs)]``, ``--driver-memory``.

Image paths are mapped to this checkout: by default ``/opt/icefeed`` (the
image's copy of the repository, see the Dockerfile) → the repository root, for
``local://`` URIs and plain path arguments alike. Fields with no local meaning
(image, service accounts, volumes, node selectors, pod templates, secrets, ...)
produce warnings, never silent drops.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.errors import ManifestError
from sparkapps.crds import Kind
from sparkapps.paths import repo_root

log = logging.getLogger(__name__)

#: Where the Dockerfile puts the repository inside the image.
IMAGE_ROOT = "/opt/icefeed"

_SPEC_TRANSLATED = {
    "type",
    "mode",
    "mainApplicationFile",
    "mainClass",
    "arguments",
    "sparkConf",
    "hadoopConf",
    "deps",
    "driver",
    "executor",
    "sparkVersion",
    "pythonVersion",
}
_DRIVER_TRANSLATED = {"cores", "memory", "env", "envVars", "javaOptions"}
_EXECUTOR_TRANSLATED = {"instances", "cores", "env", "envVars"}
_DEPS_FLAGS = {
    "jars": "--jars",
    "files": "--files",
    "pyFiles": "--py-files",
    "archives": "--archives",
    "packages": "--packages",
    "repositories": "--repositories",
    "excludePackages": "--exclude-packages",
}
_PATH_DEPS = {"jars", "files", "pyFiles", "archives"}


@dataclass(frozen=True, kw_only=True)
class LocalRun:
    """A planned local run: the command, the environment it adds, and the warnings."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def spark_submit_path() -> Path:
    """Return the ``spark-submit`` script of the installed pyspark.

    Raises ManifestError if pyspark is not installed (extra ``spark``).
    """
    found = importlib.util.find_spec("pyspark")
    if found is None or not found.submodule_search_locations:
        raise ManifestError(
            "pyspark is not installed; install it with: pip install 'icefeed[spark]'"
        )
    script = Path(next(iter(found.submodule_search_locations))) / "bin" / "spark-submit"
    if not script.is_file():
        raise ManifestError(f"no spark-submit in the installed pyspark ({script})")
    return script


def default_path_map() -> dict[str, str]:
    """Return ``{IMAGE_ROOT: <repository root>}``."""
    return {IMAGE_ROOT: str(repo_root())}


def map_path(value: str, path_map: Mapping[str, str]) -> str:
    """Map an image path or ``local://`` URI to a local path; other values pass unchanged."""
    path = value[len("local://") :] if value.startswith("local://") else value
    for prefix, target in sorted(path_map.items(), key=lambda kv: -len(kv[0])):
        base = prefix.rstrip("/")
        if path == base or path.startswith(base + "/"):
            return target.rstrip("/") + path[len(base) :]
    return path if value.startswith("local://") else value


def _application_spec(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    kind = Kind.parse(manifest.get("kind"))
    spec = manifest.get("spec")
    if not isinstance(spec, Mapping):
        raise ManifestError("spec: missing; not a SparkApplication")
    if kind is Kind.SCHEDULED_SPARK_APPLICATION:
        template = spec.get("template")
        if not isinstance(template, Mapping):
            raise ManifestError("spec.template: missing in the ScheduledSparkApplication")
        return template
    return spec


def _env_entries(section: Mapping[str, Any], where: str, warnings: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in section.get("env") or []:
        name = entry.get("name")
        if "value" in entry:
            env[str(name)] = str(entry["value"])
        else:
            warnings.append(
                f"{where}.env[{name}] comes from a Secret/ConfigMap on the cluster; "
                "not set locally (export it yourself if the job needs it)"
            )
    for name, value in (section.get("envVars") or {}).items():
        env[str(name)] = str(value)
    return env


def _local_cores(executor: Mapping[str, Any], cores: int | None) -> int:
    if cores is not None:
        if cores < 1:
            raise ManifestError(f"--cores {cores} must be >= 1")
        return cores
    wanted = int(executor.get("instances") or 1) * int(executor.get("cores") or 1)
    return max(1, min(wanted, os.cpu_count() or 1))


def plan_local_run(
    manifest: Mapping[str, Any],
    *,
    path_map: Mapping[str, str] | None = None,
    cores: int | None = None,
    extra_conf: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    spark_submit: str | None = None,
) -> LocalRun:
    """Translate ``manifest`` into a local ``spark-submit`` run (pure, nothing runs).

    Args:
        manifest: a SparkApplication manifest.
        path_map: image path prefix -> local path (``/opt/icefeed`` -> the repo).
        cores: local cores (``local[N]``); default: the manifest's executors' cores.
        extra_conf: Spark settings laid over the manifest's ``sparkConf``.
        extra_env: environment variables laid over the manifest's.
        spark_submit: the ``spark-submit`` to run (default: pyspark's own).

    Returns:
        The command, environment and warnings of the local run.

    Raises:
        ManifestError: the manifest cannot run locally (no main file, an R
            application, a main file that does not exist after path mapping).
    """
    spec = _application_spec(manifest)
    mapping = dict(default_path_map() if path_map is None else path_map)
    warnings: list[str] = []
    name = str((manifest.get("metadata") or {}).get("name") or "sparkapp")
    app_type = spec.get("type")
    if app_type == "R":
        raise ManifestError("spec.type R: run-local supports Python, Java and Scala applications")
    main_file = spec.get("mainApplicationFile")
    if not main_file:
        raise ManifestError("spec.mainApplicationFile: missing; run-local needs the main file")
    main = map_path(str(main_file), mapping)
    if "://" not in main and not Path(main).exists():
        raise ManifestError(
            f"spec.mainApplicationFile {main_file!r} maps to {main}, which does not exist here; "
            f"map its folder with --map PREFIX=LOCAL_DIR (default {IMAGE_ROOT}={repo_root()})"
        )
    driver = spec.get("driver") or {}
    executor = spec.get("executor") or {}
    n = _local_cores(executor, cores)
    argv: list[str] = [
        spark_submit or str(spark_submit_path()),
        "--master",
        f"local[{n}]",
        "--deploy-mode",
        "client",
        "--name",
        name,
    ]
    if spec.get("mainClass"):
        argv += ["--class", str(spec["mainClass"])]
    if driver.get("memory"):
        argv += ["--driver-memory", str(driver["memory"])]
    if driver.get("javaOptions"):
        argv += ["--driver-java-options", str(driver["javaOptions"])]
    conf: dict[str, str] = {}
    if driver.get("cores"):
        conf["spark.driver.cores"] = str(driver["cores"])
    env: dict[str, str] = {}
    for key, value in (spec.get("sparkConf") or {}).items():
        if str(key).startswith("spark.kubernetes."):
            warnings.append(f"spec.sparkConf[{key}] is Kubernetes-only; dropped locally")
            continue
        if str(key).startswith("spark.executorEnv."):
            # Local executors live in the driver's JVM and inherit its environment.
            env[str(key)[len("spark.executorEnv.") :]] = str(value)
        conf[str(key)] = str(value)
    for key, value in (spec.get("hadoopConf") or {}).items():
        conf[f"spark.hadoop.{key}"] = str(value)
    conf.update({str(k): str(v) for k, v in (extra_conf or {}).items()})
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    deps = spec.get("deps") or {}
    for key, values in deps.items():
        flag = _DEPS_FLAGS.get(key)
        if flag is None:
            warnings.append(f"spec.deps.{key} has no spark-submit equivalent; ignored")
            continue
        items = [map_path(str(v), mapping) if key in _PATH_DEPS else str(v) for v in values]
        if key == "packages":
            warnings.append("spec.deps.packages are resolved from Maven at start-up")
        if items:
            argv += [flag, ",".join(items)]
    argv.append(main)
    argv += [map_path(str(arg), mapping) for arg in spec.get("arguments") or []]
    env.update(_env_entries(executor, "spec.executor", warnings))
    env.update(_env_entries(driver, "spec.driver", warnings))
    env.update({str(k): str(v) for k, v in (extra_env or {}).items()})
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    root = str(repo_root())
    existing = os.environ.get("PYTHONPATH", "")
    env["PYTHONPATH"] = root + (os.pathsep + existing if existing else "")
    warnings += _ignored_fields(spec, driver, executor)
    return LocalRun(argv=tuple(argv), env=env, warnings=tuple(warnings))


def _ignored_fields(
    spec: Mapping[str, Any], driver: Mapping[str, Any], executor: Mapping[str, Any]
) -> list[str]:
    warnings = [
        f"spec.{key} has no local meaning; ignored" for key in spec if key not in _SPEC_TRANSLATED
    ]
    for role, section in (("driver", driver), ("executor", executor)):
        for key in ("envFrom", "envSecretKeyRefs", "secrets", "configMaps"):
            if key in section:
                warnings.append(
                    f"spec.{role}.{key}: Secrets/ConfigMaps are not read locally; "
                    "export the variables the job needs yourself"
                )
    skip = {"envFrom", "envSecretKeyRefs", "secrets", "configMaps"}
    warnings += [
        f"spec.driver.{key} has no local meaning; ignored"
        for key in driver
        if key not in _DRIVER_TRANSLATED and key not in skip
    ]
    for key in executor:
        if key in skip:
            continue
        if key == "memory":
            warnings.append(
                "spec.executor.memory: local executors run inside the driver JVM; "
                "its memory is spec.driver.memory"
            )
        elif key not in _EXECUTOR_TRANSLATED:
            warnings.append(f"spec.executor.{key} has no local meaning; ignored")
    return warnings


def run_local(
    plan: LocalRun,
    *,
    cwd: str | Path | None = None,
    timeout: float | None = None,
    capture: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``plan`` (its warnings are logged) and return the finished process.

    Args:
        plan: what :func:`plan_local_run` returned.
        cwd: the working directory of ``spark-submit``.
        timeout: seconds before the run is stopped (None: no limit).
        capture: capture stdout/stderr instead of passing them through.

    Returns:
        The finished ``spark-submit`` process.

    Raises:
        ManifestError: spark-submit cannot start or exceeds ``timeout``.
    """
    for warning in plan.warnings:
        log.warning("run-local: %s", warning)
    env = {**os.environ, **plan.env}
    try:
        return subprocess.run(
            list(plan.argv),
            env=env,
            cwd=cwd,
            timeout=timeout,
            check=False,
            text=True,
            capture_output=capture,
        )
    except subprocess.TimeoutExpired as exc:
        raise ManifestError(f"run-local: spark-submit did not finish within {timeout:g}s") from exc
    except OSError as exc:
        raise ManifestError(f"run-local: cannot start spark-submit: {exc.strerror}") from exc


def describe(plan: LocalRun, *, keys: Sequence[str] = ("PYSPARK_PYTHON", "PYTHONPATH")) -> str:
    """Return a shell-like rendering of ``plan`` (environment values other than ``keys`` hidden).

    Environment values can carry secrets, so only the named keys are shown.
    """
    import shlex

    shown = [f"{k}={shlex.quote(plan.env[k])}" for k in keys if k in plan.env]
    hidden = sorted(k for k in plan.env if k not in keys)
    prefix = " ".join(shown)
    more = f"  # plus env: {', '.join(hidden)}" if hidden else ""
    return f"{prefix} {shlex.join(plan.argv)}{more}".strip()
