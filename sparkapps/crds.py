"""The Spark operator's CRDs (v1beta2): API coordinates, and where their schemas come from.

The schemas are never copied into icefeed. They come, in this order, from:

1. a folder the user names (``--crds DIR``, else ``$ICEFEED_CRDS_DIR``), e.g. the
   ``config/crd/bases`` of their operator release: :class:`CrdFolder`;
2. the cluster, when one is configured and answers (``GET
   /apis/apiextensions.k8s.io/v1/customresourcedefinitions/<name>``) — the
   installed CRD is what the operator enforces: :class:`ClusterCrds`;
3. nowhere: :class:`NoCrds` says why, and validation skips the checks that
   need a schema and reports them as skipped.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from jobs.errors import ManifestError
from jobs.extras import require
from sparkapps.paths import crds_dir

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)

GROUP = "sparkoperator.k8s.io"
VERSION = "v1beta2"
API_VERSION = f"{GROUP}/{VERSION}"

#: seconds to connect to / read from the API server when fetching a CRD
CRD_REQUEST_TIMEOUT = (5.0, 30.0)

#: where a user finds the CRDs, for messages
CRDS_HELP = (
    "pass --crds DIR or set ICEFEED_CRDS_DIR to the folder holding the Spark operator's CRDs "
    "(config/crd/bases of its release), or use a cluster where the operator is installed"
)


class Kind(enum.Enum):
    """The custom resource kinds icefeed ships and submits."""

    SPARK_APPLICATION = "SparkApplication"
    SCHEDULED_SPARK_APPLICATION = "ScheduledSparkApplication"

    @property
    def plural(self) -> str:
        """The REST resource name (``sparkapplications``)."""
        return self.value.lower() + "s"

    @property
    def crd_name(self) -> str:
        """The CRD's object name (``sparkapplications.sparkoperator.k8s.io``)."""
        return f"{self.plural}.{GROUP}"

    @property
    def crd_file(self) -> str:
        """The CRD file name in an operator release's CRD folder."""
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
    """One CRD: its kind, plural, the ``openAPIV3Schema`` of v1beta2, and where it came from."""

    kind: Kind
    plural: str
    schema: dict[str, Any]
    origin: str = ""


class CrdUnavailableError(ManifestError):
    """No schema could be had for a kind; validation skips the checks that need it."""


def parse_crd(document: Mapping[str, Any], *, kind: Kind, origin: str) -> Crd:
    """Return the v1beta2 schema of a CRD ``document`` (as a file or the API holds it).

    Raises:
        ManifestError: the document is not the CRD of ``kind`` or has no v1beta2 schema.
    """
    spec = document.get("spec") if isinstance(document, Mapping) else None
    names = (spec or {}).get("names") or {}
    if not isinstance(spec, Mapping) or names.get("kind") != kind.value:
        raise ManifestError(f"{origin} is not the CustomResourceDefinition of {kind.value}")
    for version in spec.get("versions") or []:
        if version.get("name") == VERSION:
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if isinstance(schema, dict):
                return Crd(kind=kind, plural=str(names["plural"]), schema=schema, origin=origin)
    raise ManifestError(f"{origin} has no version {VERSION} with a schema")


@functools.lru_cache(maxsize=8)
def _read_crd_file(path: str, kind: Kind) -> Crd:
    with open(path, encoding="utf-8") as fh:
        return parse_crd(yaml.safe_load(fh), kind=kind, origin=path)


class CrdSource:
    """Where CRD schemas come from; :meth:`load` returns one or raises."""

    #: a few words for messages ("folder /x", "the cluster", ...)
    origin = ""

    def load(self, kind: Kind) -> Crd:
        """Return the CRD of ``kind``.

        Raises:
            CrdUnavailableError: this source has no schema to give (checks are skipped).
            ManifestError: the source is broken (a named folder without the file).
        """
        raise NotImplementedError


class CrdFolder(CrdSource):
    """CRD files in a folder the user named (``sparkoperator.k8s.io_<plural>.yaml``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().resolve()
        self.origin = f"folder {self.path}"

    def load(self, kind: Kind) -> Crd:
        """Read the CRD file of ``kind``; a missing file is an error (the folder was named)."""
        file = self.path / kind.crd_file
        if not file.is_file():
            raise ManifestError(
                f"the Spark operator CRD {kind.crd_file} is not in {self.path}; --crds and "
                "ICEFEED_CRDS_DIR must name the folder holding the operator's CRDs"
            )
        return _read_crd_file(str(file), kind)


class ClusterCrds(CrdSource):
    """The CRDs installed in the cluster, read through the API server."""

    def __init__(self, client_factory: Callable[[], ApiClient]) -> None:
        self._client_factory = client_factory
        self._client: ApiClient | None = None
        self._loaded: dict[Kind, Crd | CrdUnavailableError] = {}
        self.origin = "the cluster"

    def load(self, kind: Kind) -> Crd:
        """GET the CRD of ``kind``; raise CrdUnavailableError saying why it could not be read."""
        if kind not in self._loaded:
            try:
                self._loaded[kind] = self._fetch(kind)
            except CrdUnavailableError as exc:
                self._loaded[kind] = CrdUnavailableError(f"{exc}; {CRDS_HELP}")
        outcome = self._loaded[kind]
        if isinstance(outcome, CrdUnavailableError):
            raise outcome
        return outcome

    def _fetch(self, kind: Kind) -> Crd:
        if self._client is None:
            try:
                self._client = self._client_factory()
            except ManifestError as exc:
                raise CrdUnavailableError(f"no cluster to read the CRDs from ({exc})") from exc
        kubernetes = require("kubernetes", "k8s")
        import urllib3

        api = kubernetes.client.ApiextensionsV1Api(self._client)
        what = f"cannot read CRD {kind.crd_name} from the cluster"
        try:
            response = api.read_custom_resource_definition(
                kind.crd_name, _preload_content=False, _request_timeout=CRD_REQUEST_TIMEOUT
            )
        except kubernetes.client.ApiException as exc:
            hint = {
                403: "your account may not read CustomResourceDefinitions",
                404: "is the Spark operator installed?",
            }.get(int(exc.status or 0), "")
            detail = f"HTTP {exc.status} {exc.reason}" + (f"; {hint}" if hint else "")
            raise CrdUnavailableError(f"{what} ({detail})") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise CrdUnavailableError(f"{what} (unreachable: {type(exc).__name__})") from exc
        origin = f"the cluster's {kind.crd_name}"
        log.debug("read %s from the cluster", kind.crd_name)
        return parse_crd(json.loads(response.data), kind=kind, origin=origin)


class NoCrds(CrdSource):
    """No schema anywhere: every load raises, with ``reason``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.origin = "nowhere"

    def load(self, kind: Kind) -> Crd:
        """Raise CrdUnavailableError: there is nothing to load."""
        raise CrdUnavailableError(f"no CRD schema for {kind.value}: {self.reason}")


def crd_source(
    folder: str | Path | None = None,
    *,
    client_factory: Callable[[], ApiClient] | None = None,
) -> CrdSource:
    """Return where to read CRD schemas: ``folder``, ``$ICEFEED_CRDS_DIR``, the cluster, or none.

    A folder the user names wins (naming it is deliberate); else the cluster
    ``client_factory`` connects to, read lazily on the first :meth:`CrdSource.load`.

    Args:
        folder: the ``--crds`` folder, if given.
        client_factory: returns an ApiClient (raises ManifestError without a cluster).

    Returns:
        The source; :class:`NoCrds` with the reason when there is none.
    """
    if folder is not None:
        return CrdFolder(folder)
    named = crds_dir()
    if named is not None:
        return CrdFolder(named)
    if client_factory is not None:
        return ClusterCrds(client_factory)
    return NoCrds(f"no CRD folder was named and no cluster was asked; {CRDS_HELP}")
