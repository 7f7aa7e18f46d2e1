"""Draw a :class:`tests.bench.summary.Summary` as one PNG (matplotlib, Agg backend).

Layout: the two feeder panels (1 and 2 consumers, same x scale) on top; the
torch paths and the writer (its own scale and reference) in the middle; the
accelerator utilisation and the targets that are not bars (storage bytes in
epoch 2, node memory, ratios to pyiceberg and Petastorm) at the bottom, with
the missing cases and failed bench tests.

Every bar is labelled with its value and its ratio to the panel's grey
reference bar; a black tick marks where its target would be; colour says met
(green), missed (red), no target (blue) or reference (grey). A missing case
keeps its row, labelled "missing".
"""

from __future__ import annotations

import io
import textwrap
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tests.bench.summary import (
    Bar,
    Panel,
    Status,
    Summary,
    machine_line,
    percent_text,
    ratio_text,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

COLOURS = {
    Status.REFERENCE: "#8c8c8c",
    Status.MET: "#2e9e44",
    Status.MISS: "#d0312d",
    Status.INFO: "#3a78b5",
    Status.UNJUDGED: "#a9c4de",
    Status.MISSING: "#ffffff",
}
DPI = 100


def when(date: str) -> str:
    """``2026-11-23 14:05 UTC`` from the ISO date of results.json (as is if unparsable)."""
    try:
        return datetime.fromisoformat(date).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return date


def _rate(value: float) -> str:
    return f"{value / 1e6:.2f} M rows/s" if value < 1e7 else f"{value / 1e6:.1f} M rows/s"


def _bar_text(bar: Bar, unit: str) -> str:
    if bar.value is None:
        return "missing: no result in results.json"
    target = bar.spec.target
    text = percent_text(bar.value, target) if unit == "%" else _rate(bar.value)
    if bar.ratio is not None:
        text += f" · {ratio_text(bar.ratio, target if bar.spec.reference else None)}"
    if bar.status in (Status.MET, Status.MISS):
        goal = f"{bar.spec.target:g}×" if bar.spec.reference else f"{bar.spec.target:.0%}"
        text += f" (target ≥ {goal}: {'met' if bar.status is Status.MET else 'MISS'})"
    elif bar.status is Status.UNJUDGED:
        text += " (target not judged: reference missing)"
    return text


def _draw_panel(ax: Axes, panel: Panel, xmax: float) -> None:
    bars = panel.bars
    scale = 100.0 if panel.spec.unit == "%" else 1e-6
    ys = list(range(len(bars)))[::-1]
    for y, bar in zip(ys, bars, strict=True):
        colour = COLOURS[bar.status]
        if bar.value is not None:
            ax.barh(y, bar.value * scale, color=colour, height=0.7, edgecolor="none")
        else:
            ax.barh(y, xmax * 0.02, color="none", edgecolor="#999999", hatch="///", height=0.7)
        tick = _target_at(bar, panel)
        ax.text(
            max(bar.value or 0.0, tick or 0.0) * scale + xmax * 0.01,
            y,
            _bar_text(bar, panel.spec.unit),
            va="center",
            fontsize=8.5,
            color="#222222" if bar.value is not None else "#b00000",
            style="normal" if bar.value is not None else "italic",
        )
        if tick is not None:
            ax.plot([tick * scale] * 2, [y - 0.42, y + 0.42], color="black", lw=1.6)
    ax.set_yticks(ys, [b.spec.label for b in bars], fontsize=9)
    ax.set_xlim(0, xmax)
    ax.set_title(panel.spec.title, fontsize=10.5, loc="left")
    if panel.spec.unit == "%":
        ax.set_xlabel("time in steps ÷ wall time, %", fontsize=9)
    else:
        ref = panel.spec.reference_label
        ax.set_xlabel(f"M rows/s · ratios are × {ref}", fontsize=9)
    ax.grid(axis="x", color="#dddddd", lw=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _target_at(bar: Bar, panel: Panel) -> float | None:
    """Where the bar's target lies on the value axis (None without a target)."""
    spec = bar.spec
    if spec.target is None:
        return None
    if spec.reference is None:
        return spec.target
    ref = next((b.value for b in panel.bars if b.spec.case == spec.reference), None)
    return None if ref is None else ref * spec.target


def _xmax(panels: list[Panel]) -> float:
    """Room for the longest bar plus its label (labels need ~45 % of the width)."""
    top = max((b.value or 0.0 for p in panels for b in p.bars), default=0.0)
    scale = 100.0 if panels[0].spec.unit == "%" else 1e-6
    top = max(top * scale, 1e-3)
    return top * 1.75


def _facts(ax: Axes, summary: Summary) -> None:
    ax.axis("off")
    ax.set_title("Other targets, missing cases", fontsize=10.5, loc="left")
    lines: list[tuple[str, Status]] = []
    for check in summary.checks:
        if check.charted:
            continue
        verdict = "MISS" if check.status is Status.MISS else check.status.value
        lines.append(
            (f"{check.label}: {check.measured} (target {check.target}: {verdict})", check.status)
        )
    if summary.missing:
        shown = ", ".join(summary.missing[:6]) + (" …" if len(summary.missing) > 6 else "")
        lines.append((f"missing cases ({len(summary.missing)}): {shown}", Status.MISSING))
    elif not summary.problems:
        lines.append(("missing cases: none, every bench test passed", Status.INFO))
    lines += [(note, Status.INFO) for note in summary.notes]
    for p in summary.problems[:4]:
        lines.append((f"{p.get('outcome', '?')}: {p.get('test', '?')}", Status.MISS))
    colour = {Status.MET: "#1d6e2e", Status.MISS: "#b00000", Status.MISSING: "#b00000"}
    y = 1.0
    for text, status in lines:
        wrapped = textwrap.fill(text, width=74, subsequent_indent="    ")
        ax.text(
            0.0,
            y,
            wrapped,
            transform=ax.transAxes,
            fontsize=8.5,
            va="top",
            color=colour.get(status, "#222222"),
        )
        y -= 0.07 * (wrapped.count("\n") + 1) + 0.025


def draw(summary: Summary, path: Path) -> Path:
    """Render ``summary`` to the PNG ``path`` (written atomically); return ``path``."""
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - dev extra
        raise RuntimeError("the benchmark chart needs matplotlib: pip install -e '.[dev]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image  # a dependency of matplotlib

    panels = {p.spec.key: p for p in summary.panels}
    fig = plt.figure(figsize=(17, 17), dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(3, 2, height_ratios=[8.5, 9, 4.6])
    feeder = [panels["feeder_x1"], panels["feeder_x2"]]
    feeder_max = _xmax(feeder)
    for col, panel in enumerate(feeder):
        _draw_panel(fig.add_subplot(grid[0, col]), panel, feeder_max)
    _draw_panel(fig.add_subplot(grid[1, 0]), panels["torch"], _xmax([panels["torch"]]))
    _draw_panel(fig.add_subplot(grid[1, 1]), panels["writer"], _xmax([panels["writer"]]))
    au = fig.add_subplot(grid[2, 0])
    _draw_panel(au, panels["au"], 150.0)
    au.set_xticks(range(0, 101, 20))
    _facts(fig.add_subplot(grid[2, 1]), summary)
    fig.suptitle(
        f"icefeed benchmarks · {when(summary.date)} · {machine_line(summary)}\n"
        "bar = best of the run's repeats; label = value · × the panel's grey reference bar; "
        "black tick = target; green met · red MISS · blue no target",
        fontsize=12,
    )
    buffer = io.BytesIO()
    # labels right of the bars may reach past the axes: keep every text artist in the image
    fig.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.25)
    plt.close(fig)
    # a 256-colour palette keeps the chart sharp at ~40 % of the bytes: the copy under
    # docs/img is committed after every run
    image = Image.open(buffer).convert("RGB").quantize(256)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, format="PNG", optimize=True)
    tmp.replace(path)
    return path
