"""What a write task reports for each data file it wrote: :class:`DataFileInfo`.

A small, versioned JSON form (``DATA_FILE_INFO_VERSION``) that travels from Spark's
Python workers to the driver, and becomes a pyiceberg ``DataFile`` at commit time.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyiceberg.manifest import DataFile

#: Format version of the JSON a task returns; bump it when the layout changes.
DATA_FILE_INFO_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class DataFileInfo:
    """Metadata of one written Parquet file, as a task returns it to the driver.

    Maps ids to counts/bounds like Iceberg's DataFile; ``partition`` holds the
    partition tuple in Iceberg's internal representation (days for dates, micros
    for timestamps, …). Round-trips through :meth:`to_json` / :meth:`from_json`.
    """

    path: str
    size: int
    record_count: int
    partition: tuple[Any, ...] = ()
    column_sizes: dict[int, int]
    value_counts: dict[int, int]
    null_value_counts: dict[int, int]
    nan_value_counts: dict[int, int]
    lower_bounds: dict[int, bytes]
    upper_bounds: dict[int, bytes]
    split_offsets: tuple[int, ...] = ()

    def to_json(self) -> str:
        """Serialise to one JSON line (bytes as base64, decimals as strings)."""
        return json.dumps(
            {
                "version": DATA_FILE_INFO_VERSION,
                "path": self.path,
                "size": self.size,
                "record_count": self.record_count,
                "partition": [_encode_value(v) for v in self.partition],
                "column_sizes": self.column_sizes,
                "value_counts": self.value_counts,
                "null_value_counts": self.null_value_counts,
                "nan_value_counts": self.nan_value_counts,
                "lower_bounds": {k: _b64(v) for k, v in self.lower_bounds.items()},
                "upper_bounds": {k: _b64(v) for k, v in self.upper_bounds.items()},
                "split_offsets": list(self.split_offsets),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> DataFileInfo:
        """Parse what :meth:`to_json` wrote. Raises ValueError on another version."""
        raw = json.loads(text)
        if raw.get("version") != DATA_FILE_INFO_VERSION:
            raise ValueError(f"unknown data file info version {raw.get('version')!r}")

        def ints(d: dict[str, int]) -> dict[int, int]:
            return {int(k): int(v) for k, v in d.items()}

        return cls(
            path=raw["path"],
            size=raw["size"],
            record_count=raw["record_count"],
            partition=tuple(_decode_value(v) for v in raw["partition"]),
            column_sizes=ints(raw["column_sizes"]),
            value_counts=ints(raw["value_counts"]),
            null_value_counts=ints(raw["null_value_counts"]),
            nan_value_counts=ints(raw["nan_value_counts"]),
            lower_bounds={int(k): base64.b64decode(v) for k, v in raw["lower_bounds"].items()},
            upper_bounds={int(k): base64.b64decode(v) for k, v in raw["upper_bounds"].items()},
            split_offsets=tuple(raw["split_offsets"]),
        )

    def to_data_file(self, *, spec_id: int, format_version: int) -> DataFile:
        """Return the pyiceberg DataFile the driver appends to a snapshot."""
        from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
        from pyiceberg.typedef import Record

        return DataFile.from_args(
            _table_format_version=format_version,  # type: ignore[arg-type]
            content=DataFileContent.DATA,
            file_path=self.path,
            file_format=FileFormat.PARQUET,
            partition=Record(*self.partition),
            file_size_in_bytes=self.size,
            record_count=self.record_count,
            column_sizes=self.column_sizes,
            value_counts=self.value_counts,
            null_value_counts=self.null_value_counts,
            nan_value_counts=self.nan_value_counts,
            lower_bounds=self.lower_bounds,
            upper_bounds=self.upper_bounds,
            split_offsets=list(self.split_offsets),
            sort_order_id=None,
            spec_id=spec_id,
            equality_ids=None,
            key_metadata=None,
        )


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _encode_value(value: Any) -> Any:
    """JSON form of a partition value; bytes and decimals are tagged."""
    if isinstance(value, bytes):
        return {"b64": _b64(value)}
    if isinstance(value, Decimal):
        return {"dec": str(value)}
    if isinstance(value, uuid.UUID):
        return {"b64": _b64(value.bytes)}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if "b64" in value:
            return base64.b64decode(value["b64"])
        if "dec" in value:
            return Decimal(value["dec"])
        raise ValueError(f"unknown tagged partition value {value!r}")
    return value
