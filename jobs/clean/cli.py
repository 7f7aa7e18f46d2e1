"""``icefeed clean SPEC.yaml`` and ``python -m jobs.clean SPEC.yaml``: the same code.

Exit codes: 0 success; 2 bad spec or source (SpecError); 3 a write or commit
failed (CommitError, CatalogError); 1 any other icefeed error. Errors print one
line to stderr. ``--json`` prints only the report, as JSON, on stdout.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jobs.errors import CatalogError, CommitError, IcefeedError, SpecError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from jobs.clean.report import CleanReport

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_SPEC = 2
EXIT_COMMIT = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the clean command's arguments to ``parser``."""
    parser.add_argument("spec", metavar="SPEC.yaml", help="the CleanSpec YAML file")
    parser.add_argument("--run-id", help="idempotency key: a run id that committed writes nothing")
    parser.add_argument("--json", action="store_true", help="print only the report, as JSON")


def register(subparsers: Any) -> None:
    """Add ``icefeed clean`` to the ``icefeed`` command (argparse only, nothing heavy)."""
    parser = subparsers.add_parser(
        "clean",
        help="clean a raw source into an Iceberg table (+ rejects) per a CleanSpec",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run the clean job for parsed ``args``; print the report; return the exit code."""
    from rich.console import Console

    err = Console(stderr=True)
    try:
        report = _clean(args, err)
    except IcefeedError as exc:
        print(f"icefeed clean: error: {' '.join(str(exc).split())}", file=sys.stderr)
        if isinstance(exc, SpecError):
            return EXIT_SPEC
        if isinstance(exc, CommitError | CatalogError):
            return EXIT_COMMIT
        return EXIT_ERROR
    if args.json:
        print(report.to_json())
    else:
        Console().print(summary_table(report))
    return EXIT_OK


def _clean(args: argparse.Namespace, err: Console) -> CleanReport:
    from jobs.catalog import load_catalog
    from jobs.clean.job import earlier_report, preflight, run
    from jobs.clean.progress import SparkProgress
    from jobs.clean.spec import CleanSpec
    from jobs.extras import require

    spec = CleanSpec.from_yaml(args.spec)
    preflight(spec)  # a missing source fails here, before Spark starts
    catalog = load_catalog()
    if args.run_id:
        earlier = earlier_report(spec, catalog=catalog, run_id=args.run_id)
        if earlier is not None:
            return earlier  # committed before: no Spark needed to say so
    require("pyspark", "spark")
    from pyspark.sql import SparkSession

    from jobs.spark import get_spark

    ours = SparkSession.getActiveSession() is None
    spark = get_spark("icefeed-clean")
    try:
        show = not args.json and err.is_terminal
        with SparkProgress(spark.sparkContext, console=err, enabled=show):
            return run(spec, spark=spark, catalog=catalog, run_id=args.run_id)
    finally:
        if ours:
            spark.stop()


def summary_table(report: CleanReport) -> Table:
    """A rich Table summarising ``report``."""
    from rich.table import Table

    table = Table(title=f"icefeed clean → {report.table}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    table.add_row("rows in", f"{report.rows_in:,}")
    table.add_row("rows written", f"{report.rows_written:,}")
    table.add_row("rows rejected", f"{report.rows_rejected:,}")
    for name, count in report.to_dict()["rejects_by_reason"].items():
        table.add_row(f"  {name}", f"{count:,}")
    table.add_row("table / snapshot", f"{report.table} / {report.snapshot_id}")
    table.add_row("rejects / snapshot", f"{report.rejects_table} / {report.rejects_snapshot_id}")
    table.add_row("run id", report.run_id)
    if report.already_committed:
        table.add_row("already committed", "yes: nothing written")
    table.add_row("seconds", f"{report.seconds:.1f}")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m jobs.clean SPEC.yaml [--run-id ID] [--json]``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m jobs.clean", description=__doc__)
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return run_command(args)
