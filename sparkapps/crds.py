"""The Spark operator's CRDs (v2.5.2): API coordinates and OpenAPI schemas, read once.

The CRD files are reference data outside the repository (see
:func:`sparkapps.paths.crds_dir`); they are never copied into it.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import Any

import yaml

from jobs.errors import ManifestError
from sparkapps.paths import crds_dir

GROUP = "sparkoperator.k8s.io"
VERSION = "v1beta2"
API_VERSION = f"{GROUP}/{VERSION}"


class Kind(enum.Enum):
    """The custom resource kinds icefeed ships and submits."""

    SPARK_APPLICATION = "SparkApplication"
    SCHEDULED_SPARK_APPLICATION = "ScheduledSparkApplication"

    @property
    def plural(self) -> str:
        """The REST resource name (``sparkapplications``)."""
        return self.value.lower() + "s"

    @property
    def crd_file(self) -> str:
        """The CRD file name in the CRD folder."""
        return f"{GROUP}_{self.plural}.yaml"

    @classmethod
    def parse(cls, kind: object) -> Kind:
        """Return the Kind named ``kind``; raise ManifestError naming the valid kinds."""
        for member in cls:
            if member.value == kind:
                return member
        valid = ", ".join(m.value for m in cls)
        raise ManifestError(f"kind {kind!r} is not one of {valid}")


@dataclass(frozen=True)
class Crd:
    """One CRD: its kind, plural and the ``openAPIV3Schema`` of version v1beta2."""

    kind: Kind
    plural: str
    schema: dict[str, Any]


@functools.lru_cache(maxsize=4)
def load_crd(kind: Kind) -> Crd:
    """Read and return the CRD of ``kind``.

    Raises ManifestError if the CRD folder or file is missing, naming the
    folder and ``ICEFEED_CRDS_DIR``.
    """
    path = crds_dir() / kind.crd_file
    if not path.is_file():
        raise ManifestError(
            f"the Spark operator CRD {kind.crd_file} is not in {path.parent}; "
            "set ICEFEED_CRDS_DIR to the folder holding the operator's CRDs (v2.5.2)"
        )
    with path.open(encoding="utf-8") as fh:
        document = yaml.safe_load(fh)
    for version in document["spec"]["versions"]:
        if version["name"] == VERSION:
            return Crd(
                kind=kind,
                plural=document["spec"]["names"]["plural"],
                schema=version["schema"]["openAPIV3Schema"],
            )
    raise ManifestError(f"{path} has no version {VERSION}")
