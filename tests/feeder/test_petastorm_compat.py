"""petastorm_compat: a script written for Petastorm runs unchanged but for the import."""

from __future__ import annotations

import textwrap

import pytest

from jobs.errors import SpecError

# A typical Petastorm user script (Petastorm's documented make_spark_converter flow).
PETASTORM_SCRIPT = textwrap.dedent(
    """
    from petastorm.spark import SparkDatasetConverter, make_spark_converter

    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, cache_url)
    df = spark.range(0, 1000).selectExpr(
        "id", "cast(id as double) * 2 as feature", "cast(id % 3 as int) as label"
    )
    converter = make_spark_converter(df)
    dataset_size = len(converter)
    seen_ids, batch_sizes, dtypes = [], [], {}
    with converter.make_torch_dataloader(batch_size=32, num_epochs=1) as dataloader:
        for batch in dataloader:
            seen_ids.extend(batch["id"].tolist())
            batch_sizes.append(len(batch["label"]))
            dtypes = {name: value.dtype for name, value in batch.items()}
    shards = []
    for shard in range(2):
        with converter.make_torch_dataloader(
            batch_size=100, num_epochs=2, cur_shard=shard, shard_count=2
        ) as dataloader:
            shards.append([i for batch in dataloader for i in batch["id"].tolist()])
    converter.delete()
    """
)


@pytest.mark.spark
@pytest.mark.slow
def test_a_petastorm_script_runs_unchanged_but_for_the_import(spark, catalog, tmp_path):
    import torch

    script = PETASTORM_SCRIPT.replace(
        "from petastorm.spark import", "from feeder.petastorm_compat import"
    )
    assert script.count("\n") == PETASTORM_SCRIPT.count("\n")
    cache_url = (tmp_path / "cache").as_uri()
    namespace = {"spark": spark, "cache_url": cache_url}
    try:
        exec(compile(script, "petastorm_script.py", "exec"), namespace)
    finally:
        spark.conf.unset("petastorm.spark.converter.parentCacheDirUrl")

    assert namespace["dataset_size"] == 1000
    assert sorted(namespace["seen_ids"]) == list(range(1000))
    assert namespace["batch_sizes"] == [32] * 31 + [8]
    dtypes = namespace["dtypes"]
    assert dtypes == {"id": torch.int64, "feature": torch.float32, "label": torch.int32}
    shard0, shard1 = namespace["shards"]
    assert len(shard0) == len(shard1) == 1000  # 2 epochs x 500 rows
    for epoch in range(2):
        a = set(shard0[epoch * 500 : (epoch + 1) * 500])
        b = set(shard1[epoch * 500 : (epoch + 1) * 500])
        assert not a & b and a | b == set(range(1000))
    assert (tmp_path / "cache").exists(), "the Spark conf's cache dir was not used"
    assert not catalog.list_tables("petastorm_compat"), "delete() left the table behind"


@pytest.mark.spark
@pytest.mark.slow
def test_unsupported_reader_arguments_are_named(spark, catalog):
    from feeder.petastorm_compat import make_spark_converter

    df = spark.range(0, 10)
    converter = make_spark_converter(df, dtype=None)
    try:
        assert len(converter) == 10
        with pytest.raises(SpecError, match=r"unsupported Petastorm reader argument\(s\) \['pred"):
            converter.make_torch_dataloader(predicate=lambda r: True)
        with pytest.raises(SpecError, match="data_loader_fn"):
            converter.make_torch_dataloader(data_loader_fn=list)
    finally:
        converter.delete()
    with pytest.raises(SpecError, match="dtype"):
        make_spark_converter(df, dtype="float16")
