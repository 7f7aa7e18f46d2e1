"""``icefeed sweep TABLE``: delete orphaned staged files of a table (see :mod:`jobs.orphans`)."""

from __future__ import annotations

import argparse
from typing import Any

HOURS = 3600.0


def register(subparsers: Any) -> None:
    """Add ``icefeed sweep`` to the ``icefeed`` command (argparse only, nothing heavy)."""
    parser = subparsers.add_parser(
        "sweep",
        help="delete staged files of killed writers (_icefeed_runs/) older than a grace period",
        description=__doc__,
    )
    parser.add_argument("table", help="Iceberg table identifier, e.g. ns.name")
    parser.add_argument("--catalog", help="catalog name (default: configured or embedded)")
    parser.add_argument(
        "--older-than",
        type=float,
        metavar="HOURS",
        help="grace period in hours; never shorter than your longest write "
        "(default: table property icefeed.orphan-grace-seconds, else 72)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Sweep ``args.table``; print one line per file; return the exit code (0).

    Raises:
        CatalogError: the catalog cannot be loaded.
        SpecError: no such table, or a negative grace period.
    """
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    from jobs.catalog import load_catalog
    from jobs.errors import SpecError
    from jobs.orphans import sweep_orphans

    try:
        table = load_catalog(args.catalog).load_table(args.table)
    except (NoSuchTableError, NoSuchNamespaceError) as exc:
        raise SpecError(f"table: {args.table!r} not found ({exc})") from None
    older = None if args.older_than is None else args.older_than * HOURS
    result = sweep_orphans(table, older_than_seconds=older, dry_run=args.dry_run)
    verb = "would delete" if result.dry_run else "deleted"
    for path in result.deleted:
        print(f"{verb} {path}")
    print(
        f"{verb} {len(result.deleted)} orphaned file(s) of {args.table}; "
        f"{result.kept_recent_writes} write(s) within the grace period left alone"
    )
    return 0
