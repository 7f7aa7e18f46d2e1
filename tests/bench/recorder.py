"""The benchmark recorder every ``tests/bench`` benchmark reports through.

``record(group, case, rows=, seconds=, nbytes=, **extra)`` keeps one measurement;
at the end of the pytest session (``tests/bench/conftest.py``) :func:`write_results`
writes ``bench-results/results.json`` (date, machine, every record) and
``bench-results/results.md`` (one table per group: rows/s, MB/s and the ratio of
each case's rows/s to the group's baseline case).

The baseline of a group is the case recorded with ``baseline=True``, else the
first case of the group that has rows and seconds. Ratios are only meaningful
within one run: the machine is shared and noisy (see ``shared/BASELINES.md``).
A record without ``seconds`` (a derived ratio, a counter) is listed but has no rate.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

#: Every record of this pytest session, in recording order.
RESULTS: list[dict[str, Any]] = []
#: Version of the results.json layout.
RESULTS_VERSION = 1


def record(
    group: str,
    case: str,
    *,
    rows: int | None = None,
    seconds: float | None = None,
    nbytes: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Keep one measurement of ``case`` in ``group`` and print it; return the record.

    ``rows`` / ``seconds`` give rows/s, ``nbytes`` (bytes moved) gives MB/s;
    ``baseline=True`` marks the case the group's ratios are taken against; any
    other keyword is stored as is (JSON-serialisable values please).
    """
    entry: dict[str, Any] = {"group": group, "case": case, "rows": rows, "seconds": seconds}
    entry["nbytes"] = nbytes
    if rows is not None and seconds:
        entry["rows_per_s"] = rows / seconds
    if nbytes is not None and seconds:
        entry["mb_per_s"] = nbytes / seconds / 1e6
    entry.update(extra)
    RESULTS.append(entry)
    print(f"[bench] {json.dumps(entry, default=str)}", file=sys.stderr)
    return entry


def machine() -> dict[str, Any]:
    """Describe the machine: cores, memory, load (the machine may be shared)."""
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    if memory is None and hasattr(os, "sysconf"):
        with contextlib.suppress(ValueError, OSError):  # a name this platform lacks
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "nproc": os.cpu_count(),
        "memory_bytes": memory,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg": load,
    }


def baselines(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return each group's baseline record (see the module doc for the rule)."""
    chosen: dict[str, dict[str, Any]] = {}
    for entry in results:
        if entry.get("baseline"):
            chosen[entry["group"]] = entry
    for entry in results:
        if entry["group"] not in chosen and entry.get("rows_per_s"):
            chosen[entry["group"]] = entry
    return chosen


def _fmt(value: Any, spec: str) -> str:
    return "" if value is None else format(value, spec)


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """Render ``results`` as one markdown table per group."""
    base = baselines(results)
    m = meta["machine"]
    memory = m.get("memory_bytes")
    load = " ".join(f"{x:.2f}" for x in m.get("loadavg") or ())
    lines = [
        "# Benchmark results",
        "",
        f"{meta['date']} · {m.get('nproc')} cores · "
        f"{(memory or 0) / 2**30:.1f} GiB · load {load or '?'} · {m.get('platform')}",
        "",
        "Ratios compare rows/s with the group's baseline case, in this run only.",
    ]
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in results:
        groups.setdefault(entry["group"], []).append(entry)
    skip = {"group", "case", "rows", "seconds", "nbytes", "rows_per_s", "mb_per_s", "baseline"}
    for group, entries in groups.items():
        baseline = base.get(group)
        lines += [
            "",
            f"## {group}",
            "",
            f"baseline: `{baseline['case']}`" if baseline else "baseline: none",
            "",
            "| case | rows | seconds | rows/s | MB/s | × baseline | notes |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for e in entries:
            ratio = None
            if baseline and e.get("rows_per_s"):
                ratio = e["rows_per_s"] / baseline["rows_per_s"]
            notes = ", ".join(f"{k}={v}" for k, v in e.items() if k not in skip)
            lines.append(
                f"| {e['case']} | {_fmt(e.get('rows'), ',')} | {_fmt(e.get('seconds'), '.3f')} "
                f"| {_fmt(e.get('rows_per_s'), ',.0f')} | {_fmt(e.get('mb_per_s'), ',.1f')} "
                f"| {_fmt(ratio, '.2f')} | {notes} |"
            )
    if meta.get("problems"):
        lines += ["", "## Failed or skipped", ""]
        lines += [
            f"- {p['outcome']}: `{p['test']}` {p.get('reason', '')}" for p in meta["problems"]
        ]
    return "\n".join(lines) + "\n"


def write_results(
    out_dir: Path,
    results: list[dict[str, Any]] | None = None,
    *,
    problems: list[dict[str, str]] | None = None,
) -> Path:
    """Write ``results.json`` and ``results.md`` under ``out_dir``; return the JSON path.

    ``problems`` lists the bench tests that failed or were skipped in the session
    (``{"test", "outcome", "reason"}``), so a partial run says what it lacks.
    """
    results = RESULTS if results is None else results
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "version": RESULTS_VERSION,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "problems": problems or [],
    }
    base = baselines(results)
    enriched = []
    for e in results:
        b = base.get(e["group"])
        ratio = e["rows_per_s"] / b["rows_per_s"] if b and e.get("rows_per_s") else None
        enriched.append(
            {**e, "ratio_to_baseline": ratio, "baseline_case": b["case"] if b else None}
        )
    json_path = out_dir / "results.json"
    for path, text in (
        (json_path, json.dumps({**meta, "results": enriched}, indent=2, default=str)),
        (out_dir / "results.md", markdown(results, meta)),
    ):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return json_path
