"""The Dockerfile (no engine here to build it): what it copies exists, what it runs imports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sparkapps.local import IMAGE_ROOT
from sparkapps.manifests import load_manifest
from sparkapps.paths import repo_root, shipped_manifests

pytestmark = pytest.mark.k8s

DOCKERFILE = repo_root() / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


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


def entry_modules() -> list[str]:
    for word, rest in instructions():
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
