"""What the benchmark report shows: the charted paths, the targets, and what is missing.

Pure functions of a ``results.json`` document (``tests.bench.recorder``): no
plotting, no files. :func:`summarise` turns the records into panels of bars
(each with its ratio to the panel's reference — the raw Flight ceiling for the
feeder and torch paths, Spark's own Parquet writer for the writer) and into the
list of targets from issues #3, #4, #5 and #24, each met, missed or missing.

A case the catalogue below expects but ``results.json`` lacks (its test failed,
was skipped or was deselected) is *missing*: drawn as a gap and listed, never
silently dropped. Records the catalogue does not chart are listed as
``uncharted`` (they are all in ``results.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

Record = Mapping[str, Any]
Index = Mapping[tuple[str, str], Record]


class Status(Enum):
    """How a bar or a target reads."""

    REFERENCE = "reference"  # the 1.00× bar the panel's ratios are taken against
    MET = "met"
    MISS = "miss"
    INFO = "no target"
    UNJUDGED = "not judged"  # measured, but the reference it is judged against is missing
    MISSING = "missing"


@dataclass(frozen=True, kw_only=True)
class BarSpec:
    """One charted case: ``field`` of record ``(group, case)``.

    ``reference`` names the case of the same group whose ``field`` the ratio is
    taken against; ``target`` is the minimum ratio (or, without a reference, the
    minimum value itself); ``source`` is the issue the target comes from.
    """

    group: str
    case: str
    label: str
    field: str = "rows_per_s"
    reference: str | None = None
    target: float | None = None
    source: str = ""


@dataclass(frozen=True, kw_only=True)
class PanelSpec:
    """One panel of the chart: a title, the unit of its bars, its bars in order."""

    key: str
    title: str
    short: str  # prefix of this panel's targets in the targets table
    unit: str
    reference_label: str
    reference_short: str = ""  # the reference as the targets table names it
    bars: tuple[BarSpec, ...]


@dataclass(frozen=True, kw_only=True)
class Bar:
    """A charted case as measured: ``value`` is None when the case is missing."""

    spec: BarSpec
    value: float | None
    ratio: float | None
    status: Status


@dataclass(frozen=True, kw_only=True)
class Panel:
    """A panel as measured."""

    spec: PanelSpec
    bars: tuple[Bar, ...]


@dataclass(frozen=True, kw_only=True)
class Check:
    """One target as measured: ``measured`` is the text shown, e.g. ``0.85×``."""

    label: str
    target: str
    source: str
    measured: str
    status: Status
    charted: bool = False  # also drawn as a bar (the chart shows only the others as text)


@dataclass(frozen=True, kw_only=True)
class Summary:
    """Everything the chart and the docs section show about one run."""

    date: str
    machine: Mapping[str, Any]
    panels: tuple[Panel, ...]
    checks: tuple[Check, ...]
    missing: tuple[str, ...]  # "group/case" the catalogue expects but the run lacks
    uncharted: tuple[str, ...]  # "group/case" recorded but not in the catalogue
    problems: tuple[Mapping[str, str], ...]  # failed / skipped bench tests of the run
    notes: tuple[str, ...] = ()  # what to keep in mind reading this run (its noise)

    def panel(self, key: str) -> Panel:
        """The panel called ``key``; KeyError names the known keys."""
        for p in self.panels:
            if p.spec.key == key:
                return p
        raise KeyError(f"no panel {key!r}; panels: {[p.spec.key for p in self.panels]}")


# --- the catalogue ------------------------------------------------------------------------

_ISSUE_WRITER, _ISSUE_FEEDER, _ISSUE_TORCH, _ISSUE_SCALE = "#3", "#4", "#5", "#24"


def _feeder_panel(consumers: int) -> PanelSpec:
    c = f"_x{consumers}"
    raw, ceiling = f"raw_flight{c}", f"ceiling_raw_flight{c}"

    def bar(case: str, label: str, ref: str, target: float | None = None) -> BarSpec:
        source = _ISSUE_FEEDER if target is not None else ""
        return BarSpec(
            group="feeder", case=case + c, label=label, reference=ref, target=target, source=source
        )

    who = "1 consumer" if consumers == 1 else f"{consumers} concurrent consumers (total)"
    return PanelSpec(
        key=f"feeder{c}",
        title=f"Feeder over Flight · {who} · 4 M rows × 68 B",
        short=f"feeder, {who}",
        unit="rows/s",
        reference_label="raw Flight ceiling measured next to it",
        reference_short="the raw Flight ceiling",
        bars=(
            bar("raw_flight", "raw pyarrow Flight (ceiling)", raw),
            bar("node_do_get_seq", "DataNode do_get, in order", raw, 0.8),
            bar("node_do_get_shuffle", "DataNode do_get, shuffled", raw, 0.5),
            bar("ceiling_raw_flight", "raw pyarrow Flight (ceiling, re-measured)", ceiling),
            bar("client_stream_seq", "FeederClient.stream, in order", ceiling, 0.8),
            bar("client_stream_shuffle", "FeederClient.stream, shuffled", ceiling, 0.5),
            bar(
                "client_stream_seq_read_ahead",
                "FeederClient.stream, in order, read_ahead=1 (option)",
                ceiling,
            ),
            bar(
                "client_stream_shuffle_read_ahead",
                "FeederClient.stream, shuffled, read_ahead=1 (option)",
                ceiling,
            ),
        ),
    )


def _torch_bar(case: str, label: str, target: float | None = None) -> BarSpec:
    source = _ISSUE_TORCH if target is not None else ""
    return BarSpec(
        group="torch", case=case, label=label, reference="raw_flight", target=target, source=source
    )


TORCH = PanelSpec(
    key="torch",
    title="To torch tensors · 24 M rows × 24 B, batch 16,384, one data node",
    short="torch",
    unit="rows/s",
    reference_label="raw pyarrow Flight over the data node's own IPC files",
    reference_short="the raw Flight ceiling",
    bars=(
        _torch_bar("raw_flight", "raw pyarrow Flight, same IPC files (ceiling)"),
        _torch_bar("client_stream", "FeederClient.stream, no tensors"),
        _torch_bar("feeder_dataset_seq_1c", "FeederDataset, in order, 1 consumer", 0.8),
        _torch_bar("feeder_dataset_seq_2c", "FeederDataset, in order, 2 consumers"),
        _torch_bar("feeder_dataset_shuffle_1c", "FeederDataset, shuffled, 1 consumer"),
        _torch_bar("feeder_dataset_shuffle_2c", "FeederDataset, shuffled, 2 consumers"),
        _torch_bar("feeder_dataset_seq_1c_prefetch0", "FeederDataset, in order, prefetch=0"),
        _torch_bar(
            "feeder_dataset_seq_dataloader_2workers", "FeederDataset via DataLoader, 2 workers"
        ),
        _torch_bar(
            "feeder_dataset_seq_feederdataloader_2workers",
            "FeederDataset via FeederDataLoader, 2 workers",
        ),
        _torch_bar("pyiceberg_direct", "pyiceberg scan → same tensors"),
        _torch_bar("petastorm_0_13_1", "Petastorm 0.13.1 make_torch_dataloader"),
    ),
)


def _writer_bar(group: str, case: str, label: str, target: float | None = None) -> BarSpec:
    return BarSpec(
        group=group,
        case=case,
        label=label,
        reference="spark_df_write_parquet",
        target=target,
        source=_ISSUE_WRITER if target is not None else "",
    )


WRITER = PanelSpec(
    key="writer",
    title="Writer · 5 M rows × 5 columns, Spark local[2]",
    short="writer",
    unit="rows/s",
    reference_label="Spark's own df.write.parquet on the same DataFrame",
    reference_short="Spark's df.write.parquet",
    bars=(
        _writer_bar("writer", "spark_df_write_parquet", "cached: Spark df.write.parquet"),
        _writer_bar("writer", "write_iceberg", "cached: write_iceberg (zstd)", 0.8),
        _writer_bar("writer", "write_iceberg_snappy", "cached: write_iceberg, snappy"),
        _writer_bar("writer", "mapinarrow_handover_only", "cached: mapInArrow hand-over only"),
        _writer_bar(
            "writer", "write_iceberg_engine_spark", "cached: write_iceberg engine='spark' (opt-in)"
        ),
        _writer_bar(
            "writer_pipeline", "spark_df_write_parquet", "pipeline (filter + derive): Spark parquet"
        ),
        _writer_bar(
            "writer_pipeline", "write_iceberg", "pipeline (filter + derive): write_iceberg"
        ),
        _writer_bar(
            "writer_pipeline",
            "write_iceberg_engine_spark",
            "pipeline (filter + derive): engine='spark' (opt-in)",
        ),
    ),
)

AU = PanelSpec(
    key="au",
    title="Accelerator utilisation · 2 processes, simulated step at ½ the ceiling",
    short="accelerator utilisation",
    unit="%",
    reference_label="",
    bars=(
        # Issue #5 sizes the step to half the in-order raw ceiling and states its
        # throughput targets for shuffle off: the AU target is the in-order one.
        BarSpec(
            group="torch",
            case="accelerator_utilisation_seq",
            label="in order",
            field="au",
            target=0.95,
            source=_ISSUE_TORCH,
        ),
        BarSpec(
            group="torch",
            case="accelerator_utilisation_shuffle",
            label="shuffled (no target)",
            field="au",
        ),
        BarSpec(
            group="torch",
            case="accelerator_utilisation_null_loader",
            label="harness ceiling (no loader)",
            field="au",
        ),
    ),
)


PANELS: tuple[PanelSpec, ...] = (_feeder_panel(1), _feeder_panel(2), TORCH, WRITER, AU)


@dataclass(frozen=True, kw_only=True)
class CheckSpec:
    """A target that is not one bar's ratio: ``measure`` returns (value, text) or None."""

    label: str
    target: str
    source: str
    cases: tuple[tuple[str, str], ...]
    measure: Callable[[Index], tuple[float, str]]
    passes: Callable[[float], bool]


def _rate_ratio(
    ours: tuple[str, str], theirs: tuple[str, str], threshold: float
) -> Callable[[Index], tuple[float, str]]:
    def measure(index: Index) -> tuple[float, str]:
        ratio = index[ours]["rows_per_s"] / index[theirs]["rows_per_s"]
        return ratio, ratio_text(ratio, threshold)

    return measure


def _memory(case: str) -> Callable[[Index], tuple[float, str]]:
    def measure(index: Index) -> tuple[float, str]:
        r = index[("feeder", case)]
        # bytes the pass streamed (a pass may stream part of the node's cache), else the cache
        served = r.get("served_bytes", r["cache_bytes"])
        ratio = served / r["node_rss_anon_peak"]
        shown, peak = served / 1e6, r["node_rss_anon_peak"] / 1e6
        return ratio, f"{ratio_text(ratio, 4.0)} ({shown:.0f} MB ÷ {peak:.0f} MB)"

    return measure


def _storage_bytes(index: Index) -> tuple[float, str]:
    n = index[("torch", "epoch2_storage_bytes_read")]["storage_bytes"]
    return float(n), f"{n:,} B"


def _lease_p99(index: Index) -> tuple[float, str]:
    load = index[("coordinator", "load_x1000")]
    p99 = float(index[("coordinator", "lease_x1000")]["p99_ms"])
    return p99, f"{p99:.1f} ms ({load['requests_per_s']:,} requests/s)"


def _local_share(index: Index) -> tuple[float, str]:
    share = float(index[("locality", "dynamic_mix_4hosts")]["local_share"])
    return share, percent_text(share, 0.9)


_SEQ_1C = ("torch", "feeder_dataset_seq_1c")

EXTRA_CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec(
        label="FeederDataset (in order, 1 consumer) ÷ pyiceberg direct",
        target="≥ 2×",
        source=_ISSUE_TORCH,
        cases=(_SEQ_1C, ("torch", "pyiceberg_direct")),
        measure=_rate_ratio(_SEQ_1C, ("torch", "pyiceberg_direct"), 2.0),
        passes=lambda v: v >= 2.0,
    ),
    CheckSpec(
        label="FeederDataset (in order, 1 consumer) ÷ Petastorm 0.13.1",
        target="≥ 20×",
        source=_ISSUE_TORCH,
        cases=(_SEQ_1C, ("torch", "petastorm_0_13_1")),
        measure=_rate_ratio(_SEQ_1C, ("torch", "petastorm_0_13_1"), 20.0),
        passes=lambda v: v >= 20.0,
    ),
    CheckSpec(
        label="bytes read from table storage in epoch 2",
        target="0",
        source=f"{_ISSUE_FEEDER}, {_ISSUE_TORCH}",
        cases=(("torch", "epoch2_storage_bytes_read"),),
        measure=_storage_bytes,
        passes=lambda v: v == 0,
    ),
    *(
        CheckSpec(
            label=f"bytes served ÷ node private memory, {what}",
            target="≥ 4×",
            source=_ISSUE_FEEDER,
            cases=(("feeder", case),),
            measure=_memory(case),
            passes=lambda v: v >= 4.0,
        )
        for case, what in (
            ("node_do_get_seq_node_memory", "do_get in order, 1 consumer"),
            ("node_do_get_shuffle_node_memory", "do_get shuffled, 2 consumers"),
            (
                "node_do_get_shuffle_whole_cache_node_memory",
                "do_get shuffled, 2 consumers, whole cache",
            ),
            ("client_stream_shuffle_x2_node_memory", "FeederClient shuffled, 2 consumers"),
        )
    ),
    CheckSpec(
        label="one coordinator, 1,000 consumers: p99 lease latency",
        target="< 100 ms",
        source=_ISSUE_SCALE,
        cases=(("coordinator", "load_x1000"), ("coordinator", "lease_x1000")),
        measure=_lease_p99,
        passes=lambda v: v < 100.0,
    ),
    CheckSpec(
        label="locality: rows read on the consumer's host, dynamic MIX, 4 simulated hosts",
        target="≥ 90%",
        source=_ISSUE_SCALE,
        cases=(("locality", "dynamic_mix_4hosts"),),
        measure=_local_share,
        passes=lambda v: v >= 0.9,
    ),
)


# --- numbers as text ----------------------------------------------------------------------


def _honest(value: float, target: float | None, fmt: Callable[[int], str], start: int) -> str:
    """``fmt(digits)`` with the fewest digits from ``start`` that keep the side of
    ``target`` that ``value`` is on: 0.497 against 0.5 reads ``0.497``, never ``0.50``."""
    digits = start
    while target is not None and digits < start + 4:
        text = fmt(digits)
        shown = float(text.rstrip("×%"))
        if text.endswith("%"):
            shown /= 100
        if (shown >= target) == (value >= target):
            break
        digits += 1
    return fmt(digits)


def ratio_text(ratio: float, target: float | None = None) -> str:
    """``0.85×``; under 0.1 two significant digits (``0.0038×``), from 10 on none after
    the point (``237×``); never rounded across ``target``."""
    if ratio >= 10:
        return _honest(ratio, target, lambda d: f"{ratio:.{d}f}×", 0)
    if 0 < ratio < 0.1:
        return _honest(ratio, target, lambda d: f"{ratio:.{d}g}×", 2)
    return _honest(ratio, target, lambda d: f"{ratio:.{d}f}×", 2)


def percent_text(value: float, target: float | None = None) -> str:
    """``84.0%`` for a fraction ``value``, never rounded across ``target`` (a fraction)."""
    return _honest(value, target, lambda d: f"{value * 100:.{d}f}%", 1)


# --- summarising a run --------------------------------------------------------------------


def index_results(results: list[Record]) -> dict[tuple[str, str], Record]:
    """Records by ``(group, case)``; a later record of the same case wins."""
    return {(r["group"], r["case"]): r for r in results}


def _number(record: Record | None, field: str) -> float | None:
    value = None if record is None else record.get(field)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _bar(spec: BarSpec, index: Index) -> Bar:
    value = _number(index.get((spec.group, spec.case)), spec.field)
    if value is None:
        return Bar(spec=spec, value=None, ratio=None, status=Status.MISSING)
    ratio = None
    if spec.reference is not None:
        ref = _number(index.get((spec.group, spec.reference)), spec.field)
        ratio = value / ref if ref else None
    if spec.reference == spec.case:
        status = Status.REFERENCE
    elif spec.target is None:
        status = Status.INFO
    else:
        measured = ratio if spec.reference is not None else value
        if measured is None:
            status = Status.UNJUDGED
        else:
            status = Status.MET if measured >= spec.target else Status.MISS
    return Bar(spec=spec, value=value, ratio=ratio, status=status)


def _bar_check(panel: PanelSpec, bar: Bar) -> Check:
    spec = bar.spec
    if spec.reference is not None:
        target = f"≥ {spec.target:g}× {panel.reference_short or spec.reference}"
        measured = "" if bar.ratio is None else ratio_text(bar.ratio, spec.target)
    else:
        target = f"≥ {spec.target:.0%}"
        measured = "" if bar.value is None else percent_text(bar.value, spec.target)
    return Check(
        label=f"{panel.short}: {spec.label}",
        target=target,
        source=spec.source,
        measured=measured or "—",
        status=bar.status,
        charted=True,
    )


def _extra_check(spec: CheckSpec, index: Index) -> Check:
    if not all(case in index for case in spec.cases):
        status, text = Status.MISSING, "—"
    else:
        value, text = spec.measure(index)
        status = Status.MET if spec.passes(value) else Status.MISS
    return Check(
        label=spec.label, target=spec.target, source=spec.source, measured=text, status=status
    )


def summarise(data: Mapping[str, Any], panels: tuple[PanelSpec, ...] = PANELS) -> Summary:
    """Read a ``results.json`` document (as loaded) into a :class:`Summary`."""
    results = list(data.get("results", []))
    index = index_results(results)
    measured = tuple(Panel(spec=p, bars=tuple(_bar(b, index) for b in p.bars)) for p in panels)
    charted = {(b.group, b.case) for p in panels for b in p.bars}
    checked = {case for c in EXTRA_CHECKS for case in c.cases}
    missing = sorted(
        {f"{g}/{c}" for g, c in charted | checked if (g, c) not in index},
    )
    uncharted = tuple(
        f"{r['group']}/{r['case']}"
        for r in results
        if (r["group"], r["case"]) not in charted | checked and not r["case"].startswith("ratio_")
    )
    checks = tuple(
        _bar_check(p.spec, b) for p in measured for b in p.bars if b.spec.target is not None
    ) + tuple(_extra_check(c, index) for c in EXTRA_CHECKS)
    return Summary(
        notes=_ceiling_spread(index),
        date=str(data.get("date", "unknown date")),
        machine=data.get("machine") or {},
        panels=measured,
        checks=checks,
        missing=tuple(missing),
        uncharted=uncharted,
        problems=tuple(data.get("problems", [])),
    )


def _ceiling_spread(index: Index) -> tuple[str, ...]:
    """The feeder bench measures the raw Flight ceiling twice per consumer count: how far
    apart the two are is this run's noise, the error bar of every feeder ratio."""
    notes = []
    for consumers in (1, 2):
        a = _number(index.get(("feeder", f"raw_flight_x{consumers}")), "rows_per_s")
        b = _number(index.get(("feeder", f"ceiling_raw_flight_x{consumers}")), "rows_per_s")
        if a and b:
            apart = abs(a - b) / min(a, b)
            notes.append(
                f"noise: the raw Flight ceiling ({consumers} consumer{'s' * (consumers > 1)}) "
                f"measured twice in this run: {a / 1e6:.1f} and {b / 1e6:.1f} M rows/s, "
                f"{apart:.0%} apart"
            )
    return tuple(notes)


def machine_line(summary: Summary) -> str:
    """``2 cores · 23.5 GiB RAM · load 1.20 0.90 0.70`` from the run's machine record."""
    m = summary.machine
    parts = [f"{m.get('nproc', '?')} cores"]
    if m.get("memory_bytes"):
        parts.append(f"{m['memory_bytes'] / 2**30:.1f} GiB RAM")
    if m.get("loadavg"):
        parts.append("load " + " ".join(f"{x:.2f}" for x in m["loadavg"]))
    return " · ".join(parts)
