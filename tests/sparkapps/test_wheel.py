"""``icefeed sparkapp`` from a wheel installed in a fresh venv, used from an empty folder.

A wheel of this checkout is built (a copy of its packages, no build isolation)
and installed with ``--no-deps`` into a new venv that has no pip and nothing
else; only then is the shared venv's site-packages put on its path with a
``.pth`` line (for the dependencies: PyYAML, kubernetes, ...). A plain path line
does not run the shared venv's editable-install hook, and the test asserts
that ``sparkapps``, ``jobs`` and ``feeder`` and the ``icefeed`` distribution are
the venv's, never this checkout. The commands run in an empty folder with no
PYTHONPATH, no ICEFEED_* variables and a HOME without a kubeconfig.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.sparkapps.fake_apiserver import FakeKubeApiServer
from tests.wheels import REPO, build_wheel

pytestmark = [pytest.mark.slow, pytest.mark.k8s]

PROBE = (
    "import json, importlib.metadata as m, sparkapps, jobs, feeder; "
    "print(json.dumps({'modules': [sparkapps.__file__, jobs.__file__, feeder.__file__], "
    "'dist': str(m.distribution('icefeed').locate_file(''))}))"
)


def _run(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed, the shared venv's packages on a .pth line."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    proc = _run([sys.executable, "-m", "venv", "--without-pip", str(root)], root.parent)
    assert proc.returncode == 0, proc.stderr
    python = root / "bin" / "python"
    install = ["--python", str(python), "install", "--quiet", "--no-deps", "--no-index"]
    proc = _run([sys.executable, "-m", "pip", *install, str(wheel)], root.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (site,) = root.glob("lib/python*/site-packages")
    (site / "shared_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root


@pytest.fixture()
def empty(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An empty folder, and an environment that knows nothing of the checkout."""
    folder = tmp_path / "empty"
    folder.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ICEFEED_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "KUBECONFIG")
    }
    env["HOME"] = str(folder)  # no ~/.kube/config
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return folder, env


def test_the_wheel_carries_the_chart_values_and_manifests_and_no_crds(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        values = archive.read("sparkapps/chart/values.yaml").decode()
    assert {"sparkapps/clean-flights.yaml", "sparkapps/feeder.yaml"} <= names
    assert values == (REPO / "helm" / "icefeed" / "values.yaml").read_text(), "a copy, not a link"
    assert not [n for n in names if "sparkoperator.k8s.io_" in n], "CRDs are never vendored"


def test_the_package_is_imported_from_the_wheel(
    venv: Path, empty: tuple[Path, dict[str, str]]
) -> None:
    folder, env = empty
    proc = _run([str(venv / "bin" / "python"), "-c", PROBE], folder, env)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    for path in [*found["modules"], found["dist"]]:
        assert path.startswith(str(venv)), path
        assert not path.startswith(str(REPO)), path


def test_render_validate_and_submit_from_an_empty_folder(
    venv: Path, empty: tuple[Path, dict[str, str]], crds: Path
) -> None:
    folder, env = empty
    icefeed = str(venv / "bin" / "icefeed")
    render = [
        icefeed,
        "sparkapp",
        "render",
        "clean-flights",
        "--set",
        "image.repository=x,image.tag=y",
    ]
    proc = _run(render, folder, env)
    assert proc.returncode == 0, proc.stderr
    manifest = yaml.safe_load(proc.stdout)
    assert manifest["metadata"]["name"] == "clean-flights"
    assert manifest["spec"]["image"] == "x:y"  # Helm's comma-separated pairs
    assert sorted(p.name for p in folder.iterdir()) == [], "render wrote nothing here"
    app = folder / "app.yaml"
    app.write_text(proc.stdout)

    proc = _run([icefeed, "sparkapp", "validate", str(app)], folder, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok (some checks skipped)")
    assert "schema and unknown-field checks skipped" in proc.stderr

    with FakeKubeApiServer() as fake:  # the CRDs come from the (FAKE) cluster
        fake.install_crds(crds)
        kubeconfig = folder / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "f", "cluster": {"server": fake.host}}],
                    "users": [{"name": "f", "user": {}}],
                    "contexts": [{"name": "f", "context": {"cluster": "f", "user": "f"}}],
                    "current-context": "f",
                }
            )
        )
        submit = [
            icefeed,
            "sparkapp",
            "submit",
            str(app),
            "-n",
            "ml",
            "--kubeconfig",
            str(kubeconfig),
        ]
        proc = _run(submit, folder, env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "submitted SparkApplication ml/clean-flights\n"
        assert proc.stderr == ""  # nothing skipped: the cluster's CRD was read
        crd_reads = [r for r in fake.requests if "customresourcedefinitions" in r.path]
        assert len(crd_reads) == 1
        assert [r.query.get("dryRun") for r in fake.writes] == [["All"], None]
    assert fake.unexpected == []
