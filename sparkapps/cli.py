"""The ``icefeed`` command: one entry point, subcommands registered by each package.

Each package contributes a ``register(subparsers)`` function that adds its
subcommand and sets ``func`` (``args -> exit code``). Registration imports only
argparse-level code; heavy libraries (pyspark, pyiceberg, kubernetes) are
imported when a command runs, so ``icefeed --help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from jobs.errors import IcefeedError
from jobs.exit_codes import ExitCode, exit_code_for

#: the extra that brings each optional top-level module (pyproject.toml)
EXTRAS = {
    "pyiceberg": "lakehouse",
    "sqlalchemy": "lakehouse",
    "yaml": "lakehouse",
    "rich": "lakehouse",
    "pyspark": "spark",
    "pandas": "spark",
    "kubernetes": "k8s",
    "jsonschema": "k8s",
    "kubernetes_validate": "k8s",
    "prometheus_client": "metrics",
    "psycopg2": "postgres",
    "torch": "torch",
}


def build_parser() -> argparse.ArgumentParser:
    """Return the ``icefeed`` argument parser with every subcommand registered."""
    from feeder.cli import register as register_feeder
    from jobs.clean.cli import register as register_clean
    from jobs.orphans_cli import register as register_sweep
    from sparkapps.commands import register as register_sparkapp

    parser = argparse.ArgumentParser(
        prog="icefeed",
        description="Lakehouse to GPU: clean raw data into Iceberg, feed it to PyTorch.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument("--version", action="version", version=f"icefeed {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_clean(sub)
    register_feeder(sub)
    register_sparkapp(sub)
    register_sweep(sub)
    return parser


def package_version() -> str:
    """The installed icefeed distribution's version (package metadata), or ``unknown``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("icefeed")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``icefeed`` command line; return the process exit code (jobs.exit_codes)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except IcefeedError as exc:
        print(f"icefeed {args.command}: error: {exc}", file=sys.stderr)
        return int(exit_code_for(exc))
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(
            f"icefeed {args.command}: error: this command needs {exc.name!r}, which comes with "
            f"the {extra!r} extra: pip install 'icefeed[{extra}]' (or 'icefeed[spark,k8s]' for "
            "every command)",
            file=sys.stderr,
        )
        return int(ExitCode.BAD_INPUT)
    except KeyboardInterrupt:
        print(f"icefeed {args.command}: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
