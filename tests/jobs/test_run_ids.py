"""jobs.run_ids: one run-id format and one validation, used by the writer and the clean job."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.clean.job import run
from jobs.clean.spec import CleanSpec
from jobs.errors import SpecError
from jobs.run_ids import RUN_ID_PATTERN, check_run_id, new_run_id

#: The documented format (docs/concepts.md): ``<job>-<UTC time>-<8 hex>``.
DOCUMENTED = re.compile(r"^(?P<job>[a-z]+)-\d{8}T\d{6}Z-[0-9a-f]{8}$")

VALID = st.from_regex(RUN_ID_PATTERN, fullmatch=True)


@pytest.mark.parametrize("job", ["write", "clean"])
def test_generated_run_ids_have_the_documented_format(job: str) -> None:
    run_id = new_run_id(job)
    match = DOCUMENTED.match(run_id)
    assert match is not None and match.group("job") == job
    assert check_run_id(run_id) == run_id
    assert new_run_id(job) != run_id


def test_the_documented_example_is_a_valid_run_id() -> None:
    example = "clean-20261123T093437Z-e43ca562"
    assert DOCUMENTED.match(example) and check_run_id(example) == example


@given(VALID)
def test_every_id_matching_the_pattern_is_accepted(run_id: str) -> None:
    assert check_run_id(run_id) == run_id


@given(VALID, st.sampled_from(["/", " ", "\\", ":"]))
def test_path_characters_are_refused(run_id: str, bad: str) -> None:
    with pytest.raises(SpecError, match=r"run id .* must be 1-128 letters"):
        check_run_id(f"{run_id[:100]}{bad}x")


@pytest.mark.parametrize("run_id", ["", "-starts-with-dash", ".hidden", "x" * 129])
def test_empty_too_long_or_badly_started_ids_are_refused(run_id: str) -> None:
    with pytest.raises(SpecError, match="part of file paths"):
        check_run_id(run_id)


def test_a_job_name_that_makes_a_bad_id_is_refused() -> None:
    with pytest.raises(SpecError, match="run id"):
        new_run_id("../up")


@pytest.mark.spark
def test_writer_and_clean_job_accept_and_refuse_the_same_ids(
    spark, catalog, tmp_path: Path
) -> None:
    from jobs.writer import find_run, write_iceberg

    clean_id = new_run_id("clean")
    catalog.create_namespace_if_not_exists("test")
    result = write_iceberg(spark.range(3), "test.ids", catalog=catalog, run_id=clean_id)
    found = find_run("test.ids", clean_id, catalog=catalog)
    assert found is not None and found.snapshot_id == result.snapshot_id
    source = tmp_path / "in.csv"
    source.write_text("id\n1\n")
    spec = CleanSpec.from_dict(
        {"source": {"path": str(source)}, "table": "test.c", "columns": {"id": {"type": "long"}}}
    )
    messages = []
    for attempt in (
        lambda: write_iceberg(spark.range(3), "test.ids", catalog=catalog, run_id="../escape"),
        lambda: run(spec, spark=spark, catalog=catalog, run_id="../escape"),
    ):
        with pytest.raises(SpecError) as info:
            attempt()
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert catalog.list_tables("test") == [("test", "ids")]
