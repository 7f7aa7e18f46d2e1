"""tests.bench.report / summary / chart on a synthetic results.json (normal suite, no Spark)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from tests.bench import recorder, report
from tests.bench.summary import PANELS, Status, percent_text, ratio_text, summarise

RAW = 30e6  # rows/s of the raw Flight ceiling in the synthetic run


def _rec(out: list[dict[str, Any]], group: str, case: str, **kw: Any) -> None:
    saved = recorder.RESULTS[:]
    try:
        recorder.RESULTS.clear()
        recorder.record(group, case, **kw)
        out.extend(recorder.RESULTS)
    finally:
        recorder.RESULTS[:] = saved


def synthetic(
    drop: frozenset[str] = frozenset(), *, lease_p99_ms: float = 40.0
) -> list[dict[str, Any]]:
    """Every case the real benchmarks record, with made-up figures; ``drop`` leaves cases out."""
    out: list[dict[str, Any]] = []

    def rec(group: str, case: str, **kw: Any) -> None:
        if f"{group}/{case}" not in drop:
            _rec(out, group, case, **kw)

    rows = 5_000_000
    rec("writer", "spark_df_write_parquet", rows=rows, seconds=2.0, baseline=True)
    rec("writer", "write_iceberg", rows=rows, seconds=2.5)  # 0.80x: met, exactly on target
    rec("writer", "write_iceberg_snappy", rows=rows, seconds=2.4)
    rec("writer", "mapinarrow_handover_only", rows=rows, seconds=1.5)
    rec("writer", "write_iceberg_engine_spark", rows=rows, seconds=2.0)
    rec("writer", "ratio_write_iceberg_vs_spark", ratio=0.8)
    rec("writer_pipeline", "spark_df_write_parquet", rows=rows, seconds=3.0, baseline=True)
    rec("writer_pipeline", "write_iceberg", rows=rows, seconds=3.3)
    rec("writer_pipeline", "write_iceberg_engine_spark", rows=rows, seconds=2.7)
    for case, peak in (
        ("node_do_get_seq_node_memory", 40e6),
        ("node_do_get_shuffle_whole_cache_node_memory", 90e6),  # 1088/90 = 12.1x: met
    ):
        rec("feeder", case, node_rss_anon_peak=peak, cache_bytes=1_088_000_000)
    # a pass that streamed 272 MB of the 1088 MB cache is judged on what it streamed
    rec(
        "feeder",
        "node_do_get_shuffle_node_memory",
        node_rss_anon_peak=90e6,
        cache_bytes=1_088_000_000,
        served_bytes=272_000_000,
    )
    rows = 4_000_000
    for c in (1, 2):
        for case, share in (
            ("raw_flight", 1.0),
            ("node_do_get_seq", 0.9),
            ("node_do_get_shuffle", 0.3),
        ):
            rec("feeder", f"{case}_x{c}", rows=rows * c, seconds=rows * c / (RAW * share))
    rec(
        "feeder",
        "client_stream_shuffle_x2_node_memory",
        node_rss_anon_peak=50e6,
        cache_bytes=272_000_000,
    )
    for c in (1, 2):
        for case, share in (
            ("ceiling_raw_flight", 1.0),
            ("client_stream_seq", 0.85),
            ("client_stream_shuffle", 0.55),
            ("client_stream_seq_read_ahead", 0.95),
            ("client_stream_shuffle_read_ahead", 0.6),
        ):
            rec("feeder", f"{case}_x{c}", rows=rows * c, seconds=rows * c / (RAW * share))
    rows = 8_000_000
    for case, rate in (
        ("raw_flight", 60e6),
        ("client_stream", 58e6),
        ("feeder_dataset_seq_1c", 66e6),
        ("feeder_dataset_seq_2c", 70e6),
        ("feeder_dataset_shuffle_1c", 17e6),
        ("feeder_dataset_shuffle_2c", 18e6),
        ("feeder_dataset_seq_dataloader_2workers", 8e6),
        ("feeder_dataset_seq_feederdataloader_2workers", 30e6),
        ("feeder_dataset_seq_1c_prefetch0", 70e6),
        ("pyiceberg_direct", 27e6),
        ("petastorm_0_13_1", 0.4e6),
    ):
        rec("torch", case, rows=rows, seconds=rows / rate)
    rec("torch", "accelerator_utilisation_seq", rows=rows, seconds=20.0, au=0.96)
    rec("torch", "accelerator_utilisation_shuffle", rows=rows, seconds=30.0, au=0.62)
    rec("torch", "accelerator_utilisation_null_loader", rows=rows, seconds=19.0, au=0.98)
    rec("torch", "epoch2_storage_bytes_read", rows=rows, storage_bytes=0)
    rec("torch", "some_new_case", rows=rows, seconds=1.0)
    rec("coordinator", "load_x1000", seconds=10.0, requests=20_000, requests_per_s=2_000)
    rec("coordinator", "lease_x1000", count=8_000, p50_ms=4.0, p99_ms=lease_p99_ms)
    rec("locality", "dynamic_mix_4hosts", rows=192_000, seconds=1.5, local_share=0.97)
    return out


def _write(tmp_path: Path, results: list[dict[str, Any]], **kw: Any) -> Path:
    out = tmp_path / "bench-results"
    recorder.write_results(out, results, **kw)
    return out


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_every_charted_case_is_found_in_a_full_run(tmp_path: Path) -> None:
    summary = summarise(json.loads((_write(tmp_path, synthetic()) / "results.json").read_text()))
    assert summary.missing == ()
    assert all(b.value is not None for p in summary.panels for b in p.bars)
    assert summary.uncharted == ("torch/some_new_case",)
    assert summary.machine["nproc"] >= 1


def test_ratios_are_to_the_ceiling_measured_next_to_each_case(tmp_path: Path) -> None:
    summary = summarise(json.loads((_write(tmp_path, synthetic()) / "results.json").read_text()))
    bars = {b.spec.case: b for b in summary.panel("feeder_x1").bars}
    assert bars["raw_flight_x1"].ratio == pytest.approx(1.0)
    assert bars["raw_flight_x1"].status is Status.REFERENCE
    assert bars["node_do_get_seq_x1"].ratio == pytest.approx(0.9)
    assert bars["node_do_get_seq_x1"].status is Status.MET
    assert bars["node_do_get_shuffle_x1"].ratio == pytest.approx(0.3)
    assert bars["node_do_get_shuffle_x1"].status is Status.MISS
    assert bars["client_stream_shuffle_x1"].ratio == pytest.approx(0.55)
    torch = {b.spec.case: b for b in summary.panel("torch").bars}
    assert torch["petastorm_0_13_1"].ratio == pytest.approx(0.4 / 60)
    writer = {(b.spec.group, b.spec.case): b for b in summary.panel("writer").bars}
    assert writer[("writer", "write_iceberg")].ratio == pytest.approx(0.8)
    assert writer[("writer", "write_iceberg")].status is Status.MET  # >= is met
    assert writer[("writer_pipeline", "write_iceberg")].status is Status.INFO
    au = {b.spec.case: b for b in summary.panel("au").bars}
    assert au["accelerator_utilisation_seq"].status is Status.MET
    assert au["accelerator_utilisation_shuffle"].status is Status.INFO  # the target is in order
    assert au["accelerator_utilisation_null_loader"].status is Status.INFO


def test_targets_that_are_not_bars(tmp_path: Path) -> None:
    summary = summarise(json.loads((_write(tmp_path, synthetic()) / "results.json").read_text()))
    checks = {c.label: c for c in summary.checks if not c.charted}
    pyiceberg = checks["FeederDataset (in order, 1 consumer) ÷ pyiceberg direct"]
    assert (pyiceberg.measured, pyiceberg.status) == ("2.44×", Status.MET)
    petastorm = checks["FeederDataset (in order, 1 consumer) ÷ Petastorm 0.13.1"]
    assert (petastorm.measured, petastorm.status) == ("165×", Status.MET)
    assert checks["bytes read from table storage in epoch 2"].status is Status.MET
    memory = checks["bytes served ÷ node private memory, do_get shuffled, 2 consumers"]
    assert memory.status is Status.MISS and memory.measured.startswith("3.02×")
    whole = checks["bytes served ÷ node private memory, do_get shuffled, 2 consumers, whole cache"]
    assert (whole.measured, whole.status) == ("12× (1088 MB ÷ 90 MB)", Status.MET)


def test_chart_is_a_real_png_and_the_docs_section_is_rewritten(tmp_path: Path) -> None:
    out = _write(tmp_path, synthetic())
    doc = tmp_path / "docs" / "benchmarks.md"
    doc.parent.mkdir()
    before, after = (
        "# Benchmarks\n\nHand-written intro.\n\n",
        "\n## How to read it\n\nMore prose.\n",
    )
    doc.write_text(f"{before}{report.BEGIN}\nold numbers\n{report.END}{after}")
    image = tmp_path / "docs" / "img" / "benchmarks.png"
    summary, chart = report.make_report(out, doc=doc, image=image)
    assert chart == out / report.CHART
    width, height = _png_size(chart)
    assert 1200 <= width <= 3000 and 1000 <= height <= 3000
    assert 50_000 < chart.stat().st_size < 2_000_000
    assert image.read_bytes() == chart.read_bytes()
    text = doc.read_text()
    assert text.startswith(before + report.BEGIN) and text.endswith(report.END + after)
    assert "old numbers" not in text
    generated = text[text.index(report.BEGIN) : text.index(report.END)]
    assert "![Benchmark chart of the latest run](img/benchmarks.png)" in generated
    assert f"{summary.machine['nproc']} cores" in generated
    assert "| **MISS** |" in generated  # the misses are marked
    assert "Nothing: every charted case has a result." in generated
    # a second run replaces the section again, it does not nest or duplicate it
    report.make_report(out, doc=doc, image=image)
    assert doc.read_text() == text


def test_a_partial_run_still_draws_and_names_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drop = frozenset({"torch/petastorm_0_13_1", "feeder/ceiling_raw_flight_x2"})
    problems = [
        {"test": "tests/bench/test_bench_torch.py::test_bench_petastorm", "outcome": "failed"}
    ]
    out = _write(tmp_path, synthetic(drop), problems=problems)
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"intro\n{report.BEGIN}\n{report.END}\n")
    assert report.main([str(out), "--docs", str(doc), "--docs-image", str(tmp_path / "c.png")]) == 0
    printed = capsys.readouterr().out
    assert (
        "MISSING from this run (2): feeder/ceiling_raw_flight_x2, torch/petastorm_0_13_1" in printed
    )
    assert "failed: tests/bench/test_bench_torch.py::test_bench_petastorm" in printed
    _png_size(out / report.CHART)
    summary = summarise(json.loads((out / "results.json").read_text()))
    x2 = {b.spec.case: b for b in summary.panel("feeder_x2").bars}
    assert x2["ceiling_raw_flight_x2"].status is Status.MISSING
    # measured, but without its ceiling the target cannot be judged: neither met nor missed
    assert x2["client_stream_seq_x2"].status is Status.UNJUDGED
    assert x2["client_stream_seq_x2"].value == pytest.approx(25.5e6)
    petastorm = next(c for c in summary.checks if "Petastorm" in c.label)
    assert petastorm.status is Status.MISSING
    text = doc.read_text()
    assert "- `torch/petastorm_0_13_1`: no result in results.json" in text
    assert "- failed: `tests/bench/test_bench_torch.py::test_bench_petastorm`" in text


def test_markers_must_be_there_once_and_in_order() -> None:
    body = "new\n"
    assert report.replace_section(f"a{report.BEGIN}x{report.END}b", body) == (
        f"a{report.BEGIN}\nnew\n{report.END}b"
    )
    for broken in (
        "no markers",
        f"{report.END}x{report.BEGIN}",
        f"{report.BEGIN}{report.BEGIN}{report.END}",
        f"{report.BEGIN} only",
    ):
        with pytest.raises(report.ReportError, match="exactly one"):
            report.replace_section(broken, body)


def test_no_results_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report.main([str(tmp_path)]) == 2
    assert "run `make bench`" in capsys.readouterr().err


def test_no_docs_page_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _write(tmp_path, synthetic())
    image = tmp_path / "img.png"
    argv = [str(out), "--docs", str(tmp_path / "nope.md"), "--docs-image", str(image)]
    assert report.main(argv) == 2
    assert "no page" in capsys.readouterr().err
    assert not image.exists()


def test_the_catalogue_charts_each_case_once() -> None:
    cases = [(b.group, b.case) for p in PANELS for b in p.bars]
    assert len(cases) == len(set(cases))
    for panel in PANELS:
        for bar in panel.bars:
            refs = {b.case for b in panel.bars if b.group == bar.group}
            assert bar.reference is None or bar.reference in refs, (panel.key, bar.case)


def test_a_miss_is_never_rounded_up_to_its_target() -> None:
    assert ratio_text(0.4966, 0.5) == "0.497×"  # not 0.50×
    assert ratio_text(0.5, 0.5) == "0.50×"
    assert ratio_text(0.85, 0.8) == "0.85×"
    assert ratio_text(19.97, 20) == "19.97×"  # not 20×
    assert ratio_text(236.7, 20) == "237×"
    assert ratio_text(0.0038) == "0.0038×"  # not 0.00×
    assert percent_text(0.9496, 0.95) == "94.96%"  # not 95.0%
    assert percent_text(0.84, 0.95) == "84.0%"


def test_the_two_ceiling_measurements_give_the_runs_noise(tmp_path: Path) -> None:
    results = synthetic(frozenset({"feeder/ceiling_raw_flight_x2"}))
    for r in results:
        if r["case"] == "ceiling_raw_flight_x1":
            r["rows_per_s"] = 39e6
    summary = summarise({"results": results})
    assert summary.notes == (
        "noise: the raw Flight ceiling (1 consumer) measured twice in this run: "
        "30.0 and 39.0 M rows/s, 30% apart",
    )


def test_the_committed_docs_page_has_the_markers_and_its_image() -> None:
    text = report.DOCS.read_text()
    assert text.count(report.BEGIN) == 1 and text.count(report.END) == 1
    link = report.DOCS_IMAGE.relative_to(report.DOCS.parent).as_posix()
    assert f"]({link})" in text and report.DOCS_IMAGE.is_file()


@pytest.mark.parametrize(("p99", "status"), [(40.0, Status.MET), (100.0, Status.MISS)])
def test_the_coordinator_lease_latency_target_is_judged_on_its_p99(
    tmp_path: Path, p99: float, status: Status
) -> None:
    results = _write(tmp_path, synthetic(lease_p99_ms=p99)) / "results.json"
    (check,) = [
        c for c in summarise(json.loads(results.read_text())).checks if "lease latency" in c.label
    ]
    assert (check.status, check.target, check.source) == (status, "< 100 ms", "#24")
    assert check.measured == f"{p99:.1f} ms (2,000 requests/s)"
