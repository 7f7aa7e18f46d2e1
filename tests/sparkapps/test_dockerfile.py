"""The Dockerfile (no engine here to build it): what it copies exists, what it runs imports."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from sparkapps.local import IMAGE_ROOT
from sparkapps.manifests import load_manifest
from sparkapps.paths import repo_root, shipped_manifests

pytestmark = pytest.mark.k8s

DOCKERFILE = repo_root() / "Dockerfile"


def instructions(stage: str | None = None) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped; with
    ``stage``, only that build stage's (``FROM ... AS stage`` to the next ``FROM``)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    current = None
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            if word.upper() == "FROM":
                current = rest.split()[-1] if " AS " in rest.upper() else None
            if stage is None or current == stage:
                out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[str]:
    """The build stages' names, in order (the last one is what a plain build makes)."""
    return [rest.split()[-1] for word, rest in instructions() if word == "FROM"]


def pip_installs(stage: str) -> list[str]:
    """The requirement arguments of the stage's ``pip install`` runs."""
    found = []
    for word, rest in instructions(stage):
        if word == "RUN" and "pip install" in rest:
            args = shlex.split(rest.split("pip install", 1)[1])
            found += [a for a in args if not a.startswith("-")]
    return found


def copies() -> list[tuple[list[str], str]]:
    result = []
    for word, rest in instructions():
        if word == "COPY":
            parts = [p for p in rest.split() if not p.startswith("--")]
            result.append((parts[:-1], parts[-1]))
    return result


def test_every_copy_source_exists_and_is_not_docker_ignored() -> None:
    assert copies(), "the Dockerfile copies nothing"
    allowed = {
        line[1:].rstrip("/")
        for line in (repo_root() / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for sources, _ in copies():
        for source in sources:
            assert (repo_root() / source).exists(), f"COPY source {source} does not exist"
            assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"


def test_the_repository_lands_where_the_manifests_expect_it() -> None:
    workdirs = [rest for word, rest in instructions() if word == "WORKDIR"]
    assert IMAGE_ROOT in workdirs
    copied = {dest.rstrip("/") for _, dest in copies()}
    for path in shipped_manifests():
        manifest = load_manifest(path)
        spec = manifest["spec"].get("template", manifest["spec"])
        for ref in [spec["mainApplicationFile"], *spec.get("arguments", [])]:
            inside = ref.removeprefix("local://")
            if not inside.startswith(IMAGE_ROOT + "/"):
                continue
            relative = inside[len(IMAGE_ROOT) + 1 :]
            assert (repo_root() / relative).is_file(), f"{path.name}: {ref} is not in the repo"
            assert relative.split("/")[0] in copied, f"{path.name}: {ref} is not copied"


def entry_modules(stage: str = "spark") -> list[str]:
    for word, rest in instructions(stage):
        match = re.search(r'python3 -c "import ([\w., ]+)"', rest)
        if word == "RUN" and match:
            return [m.strip() for m in match.group(1).split(",")]
    return []


def test_the_entry_modules_it_names_cover_the_manifests_and_import() -> None:
    modules = entry_modules()
    assert {"jobs.clean.cli", "feeder.__main__", "sparkapps.launch"} <= set(modules)
    for module in modules:
        result = subprocess.run(
            [sys.executable, "-c", f"import {module}"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=Path(repo_root()),
        )
        assert result.returncode == 0, f"import {module} failed:\n{result.stderr[-2000:]}"


def test_a_plain_build_makes_the_spark_image_and_a_train_target_exists() -> None:
    assert stages() == ["train", "spark"]


def test_the_train_image_installs_only_the_torch_extra_and_imports_the_dataset() -> None:
    assert pip_installs("train") == [".[torch]"]
    assert set(entry_modules("train")) == {"feeder.torch", "feeder.client"}
    assert ("USER", "1000") in instructions("train")


def _resolved(requirements: list[str]) -> set[str]:
    """What pip's resolver would install for ``requirements`` (from this checkout), by name."""
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--no-build-isolation",
            "--report",
            "-",
            *requirements,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=Path(repo_root()),
    )
    assert report.returncode == 0, report.stderr[-3000:]
    return {
        item["metadata"]["name"].lower().replace("_", "-")
        for item in json.loads(report.stdout)["install"]
    }


@pytest.mark.slow
def test_pips_resolver_puts_no_torch_in_the_spark_image_and_no_lakehouse_in_the_train_image():
    spark = _resolved(pip_installs("spark"))
    assert {"pyiceberg", "kubernetes", "prometheus-client", "pandas"} <= spark
    assert "torch" not in spark
    train = _resolved([*pip_installs("train"), "torch==2.13.0"])  # the CPU build, as make venv
    assert {"torch", "pyarrow", "pydantic", "numpy"} <= train
    assert not train & {"pyiceberg", "sqlalchemy", "pyspark", "pandas", "pyyaml", "rich"}
