"""Petastorm's ``make_spark_converter`` API, backed by our Arrow writer and the feeder.

A script written for Petastorm runs unchanged but for the import::

    from feeder.petastorm_compat import make_spark_converter, SparkDatasetConverter
    converter = make_spark_converter(df)
    with converter.make_torch_dataloader(batch_size=32, num_epochs=1) as loader:
        for batch in loader:            # dict[str, torch.Tensor]
            ...
    converter.delete()

Instead of Parquet files in Petastorm's cache dir, the DataFrame is written once
to an Iceberg table (``jobs.writer.write_iceberg``) and served by a feeder
(``feeder.serve``) started on first use. Differences: ``docs/migrating-from-petastorm.md``.
pyspark is imported only when a DataFrame is converted.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from jobs.errors import SpecError

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyspark.sql import DataFrame, SparkSession

    from feeder.torch.dataset import FeederDataset
    from feeder.torch.tensors import Batch

log = logging.getLogger(__name__)

NAMESPACE = "petastorm_compat"
DEFAULT_ROW_GROUP_SIZE_BYTES = 32 * 1024 * 1024
#: Reader kwargs of ``petastorm.make_batch_reader`` that have a meaning here.
_READER_KWARGS = {"cur_shard", "shard_count", "seed", "shuffle_row_groups", "schema_fields"}
#: Reader kwargs accepted for compatibility and ignored (they tune Petastorm internals).
_IGNORED_KWARGS = {"reader_pool_type", "results_queue_size", "hdfs_driver", "cache_type"}


class SparkDatasetConverter:
    """One converted DataFrame (an Iceberg table) and the feeder that serves it.

    ``len(converter)`` is the row count. :meth:`make_torch_dataloader` gives a
    context manager yielding a loader of dict-of-tensor batches; :meth:`delete`
    stops the feeder and drops the table.
    """

    #: Petastorm's Spark conf key for the cache dir; here it names the feeder's cache dir.
    PARENT_CACHE_DIR_URL_CONF = "petastorm.spark.converter.parentCacheDirUrl"

    def __init__(
        self,
        table_name: str,
        *,
        catalog: Catalog,
        spark: SparkSession | None,
        dataset_size: int,
        owns_table: bool,
        cache_dir: str | None = None,
    ) -> None:
        self.table_name = table_name
        self.catalog = catalog
        self.spark = spark
        self.dataset_size = dataset_size
        self.owns_table = owns_table
        self.cache_dir = cache_dir
        self._feeder: Any = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.dataset_size

    def __repr__(self) -> str:
        return f"SparkDatasetConverter(table={self.table_name!r}, rows={self.dataset_size})"

    def endpoint(self) -> str:
        """Start the feeder if needed (waits until it is ready) and return its endpoint."""
        with self._lock:
            if self._feeder is None:
                from feeder.coordinator.session import serve

                self._feeder = serve(
                    self.table_name,
                    spark=self.spark,
                    catalog=self.catalog,
                    nodes=1,
                    cache_dir=self.cache_dir,
                )
                self._feeder.wait_ready(timeout=300)
                atexit.register(self._stop_feeder)
            return str(self._feeder.endpoint)

    def _stop_feeder(self) -> None:
        with self._lock:
            feeder, self._feeder = self._feeder, None
        if feeder is not None:
            feeder.stop()

    def make_torch_dataloader(
        self,
        batch_size: int = 32,
        num_epochs: int | None = None,
        workers_count: int | None = None,
        shuffling_queue_capacity: int = 0,
        data_loader_fn: Any = None,
        **petastorm_reader_kwargs: Any,
    ) -> AbstractContextManager[TorchLoader]:
        """Return a context manager yielding a loader of ``dict[str, Tensor]`` batches.

        ``num_epochs=None`` repeats forever (as Petastorm). Shuffling is on when
        ``shuffling_queue_capacity > 0`` or ``shuffle_row_groups`` (Petastorm's
        default, True); ``cur_shard``/``shard_count`` select a rank's equal share.
        ``workers_count`` is accepted and ignored (one prefetch thread per loader);
        ``data_loader_fn`` is not supported (SpecError).
        """
        if data_loader_fn is not None:
            raise SpecError("data_loader_fn is not supported: iterate the returned loader")
        unknown = set(petastorm_reader_kwargs) - _READER_KWARGS - _IGNORED_KWARGS
        if unknown:
            raise SpecError(
                f"unsupported Petastorm reader argument(s) {sorted(unknown)}; supported: "
                f"{sorted(_READER_KWARGS)} (ignored: {sorted(_IGNORED_KWARGS)})"
            )
        if num_epochs is not None and num_epochs < 0:
            raise SpecError(f"num_epochs {num_epochs} must be >= 0 or None (forever)")
        kw = petastorm_reader_kwargs
        cur_shard, shard_count = kw.get("cur_shard"), kw.get("shard_count")
        if (cur_shard is None) != (shard_count is None):
            raise SpecError("cur_shard and shard_count go together (give both or neither)")
        shuffle = shuffling_queue_capacity > 0 or bool(kw.get("shuffle_row_groups", True))
        columns = kw.get("schema_fields")
        from feeder.torch.dataset import FeederDataset

        dataset = FeederDataset(
            self.endpoint(),
            batch_size=batch_size,
            columns=list(columns) if columns is not None else None,
            job=f"petastorm-{uuid.uuid4().hex[:8]}",
            shuffle=shuffle,
            seed=int(kw.get("seed") or 0),
            rank=cur_shard if cur_shard is not None else 0,
            world_size=shard_count if shard_count is not None else 1,
            drop_last=False,
        )
        return _LoaderContext(TorchLoader(dataset, num_epochs))

    def delete(self) -> None:
        """Stop the feeder and drop the converted table (if this converter wrote it)."""
        self._stop_feeder()
        if self.owns_table:
            self.catalog.drop_table(self.table_name)


class TorchLoader:
    """Iterates ``num_epochs`` epochs (forever if None) of a FeederDataset, Petastorm-style."""

    def __init__(self, dataset: FeederDataset, num_epochs: int | None) -> None:
        self.dataset = dataset
        self.num_epochs = num_epochs
        self._next_epoch = 0

    def __iter__(self) -> Iterator[Batch]:
        epoch = self._next_epoch
        while self.num_epochs is None or epoch < self.num_epochs:
            self.dataset.set_epoch(epoch)
            yield from self.dataset
            epoch += 1
        self._next_epoch = 0


class _LoaderContext(AbstractContextManager["TorchLoader"]):
    def __init__(self, loader: TorchLoader) -> None:
        self.loader = loader

    def __enter__(self) -> TorchLoader:
        return self.loader

    def __exit__(self, *exc: object) -> None:
        return None


def _convert_precision(df: DataFrame, dtype: str | None) -> DataFrame:
    """Cast float columns (and arrays of them) like Petastorm's ``dtype`` argument."""
    if dtype is None:
        return df
    if dtype not in ("float32", "float64"):
        raise SpecError(f"dtype: {dtype!r} is not one of 'float32', 'float64', None")
    from pyspark.sql import types as T

    source, target = (
        (T.DoubleType, T.FloatType()) if dtype == "float32" else (T.FloatType, T.DoubleType())
    )
    for field in df.schema.fields:
        if isinstance(field.dataType, source):
            df = df.withColumn(field.name, df[field.name].cast(target))
        elif isinstance(field.dataType, T.ArrayType) and isinstance(
            field.dataType.elementType, source
        ):
            df = df.withColumn(field.name, df[field.name].cast(T.ArrayType(target)))
    return df


def _table_rows(table: Any) -> int:
    snapshot = table.current_snapshot()
    if snapshot is None or snapshot.summary is None:
        return 0
    return int(snapshot.summary["total-records"] or 0)


def make_spark_converter(
    df: DataFrame | str | Any,
    parquet_row_group_size_bytes: int = DEFAULT_ROW_GROUP_SIZE_BYTES,
    compression_codec: str | None = None,
    dtype: str | None = "float32",
    *,
    catalog: Catalog | None = None,
    table_name: str | None = None,
) -> SparkDatasetConverter:
    """Convert a Spark DataFrame (or name an existing Iceberg table) for PyTorch loading.

    ``df``: a Spark DataFrame — written once, with ``dtype`` applied as Petastorm
    does, to ``table_name`` (default ``petastorm_compat.df_<hash of the plan>``; an
    existing table of that name is reused, as Petastorm reuses its cache); or an
    Iceberg table identifier / pyiceberg ``Table``, used as is (``dtype`` ignored).
    ``catalog`` defaults to ``jobs.catalog.load_catalog()``. ``parquet_row_group_size_bytes``
    and ``compression_codec`` are accepted for compatibility; the writer chooses.
    Raises SpecError for a bad ``dtype``; CatalogError for an unknown table.
    """
    del parquet_row_group_size_bytes, compression_codec  # the writer's own choices apply
    if catalog is None:
        from jobs.catalog import load_catalog

        catalog = load_catalog()
    from pyiceberg.table import Table

    if isinstance(df, (str, Table)):
        name = df if isinstance(df, str) else ".".join(df.name())
        from pyiceberg.exceptions import NoSuchTableError

        from jobs.errors import CatalogError

        try:
            table = catalog.load_table(name)
        except NoSuchTableError as exc:
            raise CatalogError(f"table {name!r} not found in catalog {catalog.name!r}") from exc
        return SparkDatasetConverter(
            name,
            catalog=catalog,
            spark=None,
            dataset_size=_table_rows(table),
            owns_table=False,
        )
    spark = df.sparkSession
    df = _convert_precision(df, dtype)
    plan = df._jdf.queryExecution().analyzed().toString()
    digest = hashlib.sha256(plan.encode()).hexdigest()[:16]
    name = table_name or f"{NAMESPACE}.df_{digest}"
    namespace = name.rsplit(".", 1)[0]
    catalog.create_namespace_if_not_exists(namespace)
    if not catalog.table_exists(name):
        from jobs.writer import write_iceberg

        write_iceberg(df, name, catalog=catalog, mode="overwrite", run_id=f"petastorm-{digest}")
    cache_dir = spark.conf.get(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, None)
    if cache_dir is not None and cache_dir.startswith("file://"):
        cache_dir = cache_dir[len("file://") :]
    return SparkDatasetConverter(
        name,
        catalog=catalog,
        spark=spark,
        dataset_size=_table_rows(catalog.load_table(name)),
        owns_table=table_name is None,
        cache_dir=cache_dir,
    )
