"""``icefeed clean SPEC`` and ``python -m jobs.clean SPEC``: the same code.

SPEC is a path or a URI (``file://``, ``s3://``).
``icefeed clean validate SPEC`` checks a spec (no Spark, nothing written);
``icefeed clean schema`` prints the CleanSpec JSON Schema.

Exit codes (one table for every icefeed command, jobs.exit_codes): 0 success;
1 any other icefeed error; 2 bad spec or source (SpecError); 3 a write or
commit failed (CommitError, CatalogError); 4 rejects over the spec's threshold
(nothing committed). Errors print one line to stderr. ``--json`` prints only
the report, as JSON, on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jobs.errors import IcefeedError, SpecError
from jobs.exit_codes import ExitCode, exit_code_for

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from jobs.clean.report import CleanReport

log = logging.getLogger(__name__)

EXIT_OK = int(ExitCode.OK)
EXIT_ERROR = int(ExitCode.FAILED)
EXIT_SPEC = int(ExitCode.BAD_INPUT)
EXIT_COMMIT = int(ExitCode.COMMIT)
EXIT_REJECTS = int(ExitCode.REJECTS)
#: ``icefeed clean ACTION ...``: actions other than running a spec.
ACTIONS = ("validate", "schema")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the clean command's arguments to ``parser``."""
    parser.add_argument(
        "spec",
        metavar="SPEC",
        help="the CleanSpec YAML: a path or URI (file://, s3://); or 'validate SPEC', 'schema'",
    )
    parser.add_argument("target", nargs="?", metavar="SPEC", help=argparse.SUPPRESS)
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
        if args.spec in ACTIONS:
            return _action(args)
        if args.target is not None:
            raise SpecError(
                f"unexpected argument {args.target!r}: give one SPEC, or one of "
                f"{', '.join(ACTIONS)} before it"
            )
        report = _clean(args, err)
    except IcefeedError as exc:
        print(f"icefeed clean: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return int(exit_code_for(exc))
    if args.json:
        print(report.to_json())
    else:
        Console().print(summary_table(report))
    return EXIT_OK


def _action(args: argparse.Namespace) -> int:
    """``validate SPEC`` or ``schema``: pydantic only, no Spark, no catalog, nothing written."""
    from jobs.clean.spec import CleanSpec, spec_json_schema

    if args.spec == "schema":
        if args.target is not None:
            raise SpecError(f"clean schema takes no argument (got {args.target!r})")
        print(json.dumps(spec_json_schema(), indent=2))
        return EXIT_OK
    if args.target is None:
        raise SpecError(
            "clean validate: give the spec to check, e.g. icefeed clean validate s.yaml"
        )
    spec = CleanSpec.from_yaml(args.target)
    if args.json:
        print(json.dumps({"spec": args.target, "valid": True, "table": spec.table}))
    else:
        print(f"{args.target}: valid CleanSpec for {spec.table} (rejects: {spec.rejects_table})")
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
