"""Arrow record batches → dicts of torch tensors (pure: no server, no disk).

Conversion rules, per Arrow type of a column (documented in ``docs/torch.md``):

- integers, floats (incl. float16), without nulls → 1-d tensor, **zero-copy** from
  the Arrow buffer via DLPack (the tensor shares memory with the batch: treat it
  as read-only, or ``.clone()`` it before writing in place);
- timestamps, durations, date64, time64 → ``int64`` (the type's own unit; time
  zones are dropped); date32, time32 → ``int32``; all zero-copy;
- bool → ``torch.bool`` (Arrow packs bools as bits, so this copies);
- fixed-size lists (nested to any depth) of numbers → n-d tensor
  ``(rows, d1, d2, ...)``, zero-copy;
- ``arrow.fixed_shape_tensor`` → ``(rows, *shape)``, zero-copy when the tensor
  has no permutation;
- variable-length lists of numbers → with ``lists=ListPolicy.PAD`` a padded
  ``(rows, max_len)`` tensor (``pad_value``) plus ``"<name>_lengths"`` (int64);
  with ``ListPolicy.NESTED`` a jagged ``torch.nested`` tensor;
- strings, binary (and dictionaries of them) → a Python ``list`` with
  ``strings=StringPolicy.LIST`` (the default), or left out with ``StringPolicy.DROP``;
- nulls → :class:`~jobs.errors.FeederError` naming the column with
  ``nulls=NullPolicy.ERROR`` (the default), or filled with ``fill_value``
  (``False`` for bools) with ``NullPolicy.FILL`` (a copy).

Any other type (decimal, struct, map, ...) raises :class:`~jobs.errors.FeederError`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from jobs.errors import FeederError, SpecError

log = logging.getLogger(__name__)

LENGTHS_SUFFIX = "_lengths"

#: What a converted batch holds: tensors, or Python lists for string columns.
Batch = dict[str, Any]


class NullPolicy(enum.Enum):
    """What to do with a null value in a column that becomes a tensor."""

    ERROR = "error"
    FILL = "fill"


class ListPolicy(enum.Enum):
    """How variable-length list columns become tensors."""

    PAD = "pad"
    NESTED = "nested"


class StringPolicy(enum.Enum):
    """What happens to string and binary columns (tensors cannot hold them)."""

    LIST = "list"
    DROP = "drop"


@dataclass(frozen=True, kw_only=True)
class TensorOptions:
    """How :func:`batch_to_tensors` converts columns; validated at construction.

    ``pin_memory`` pins host memory (only when an accelerator is present; ignored
    with a warning otherwise); ``device`` moves every tensor there (non-blocking
    when pinned). Enum fields also accept their string values.
    """

    nulls: NullPolicy = NullPolicy.ERROR
    fill_value: float = 0
    lists: ListPolicy = ListPolicy.PAD
    pad_value: float = 0
    strings: StringPolicy = StringPolicy.LIST
    pin_memory: bool = False
    device: str | torch.device | None = None

    def __post_init__(self) -> None:
        for name, enum_type in (
            ("nulls", NullPolicy),
            ("lists", ListPolicy),
            ("strings", StringPolicy),
        ):
            value = getattr(self, name)
            if isinstance(value, enum_type):
                continue
            try:
                object.__setattr__(self, name, enum_type(value))
            except ValueError:
                valid = ", ".join(repr(m.value) for m in enum_type)
                raise SpecError(f"{name}: {value!r} is not one of {valid}") from None
        if self.device is not None:
            try:
                object.__setattr__(self, "device", torch.device(self.device))
            except (RuntimeError, TypeError) as exc:
                raise SpecError(f"device: {self.device!r} is not a torch device ({exc})") from None


_ZERO_COPY_VIEW = {
    pa.types.is_timestamp: pa.int64(),
    pa.types.is_duration: pa.int64(),
    pa.types.is_date64: pa.int64(),
    pa.types.is_time64: pa.int64(),
    pa.types.is_date32: pa.int32(),
    pa.types.is_time32: pa.int32(),
}


#: Arrow type ids of integers and floats: DLPack-able, zero-copy, when without nulls.
_NUMBER_TYPE_IDS = frozenset(
    t.id
    for t in (
        pa.int8(),
        pa.int16(),
        pa.int32(),
        pa.int64(),
        pa.uint8(),
        pa.uint16(),
        pa.uint32(),
        pa.uint64(),
        pa.float16(),
        pa.float32(),
        pa.float64(),
    )
)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _is_stringy(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _is_stringy(t.value_type)
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_string_view(t)
        or pa.types.is_binary_view(t)
        or pa.types.is_fixed_size_binary(t)
    )


def _no_nulls(arr: pa.Array, name: str, options: TensorOptions) -> pa.Array:
    """Return ``arr`` without nulls: unchanged, filled, or raise (per ``options.nulls``)."""
    if arr.null_count == 0:
        return arr
    if options.nulls is NullPolicy.ERROR:
        raise FeederError(
            f"column {name!r} has {arr.null_count} null value(s) in this batch; tensors "
            "cannot hold nulls: pass nulls='fill' (with fill_value=...) or filter them "
            "out with a row_filter"
        )
    if pa.types.is_boolean(arr.type):
        return pc.fill_null(arr, False)
    return pc.fill_null(arr, pa.scalar(options.fill_value).cast(arr.type))


def _flat_tensor(arr: pa.Array, name: str, options: TensorOptions) -> torch.Tensor:
    """A 1-d tensor of a primitive (number, bool, temporal) array."""
    t = arr.type
    for test, view_type in _ZERO_COPY_VIEW.items():
        if test(t):
            arr = arr.view(view_type)
            t = view_type
            break
    if pa.types.is_boolean(t):
        arr = _no_nulls(arr, name, options)
        return torch.from_numpy(arr.to_numpy(zero_copy_only=False))
    if not _is_number(t):
        raise FeederError(f"column {name!r}: Arrow type {arr.type} cannot become a tensor")
    arr = _no_nulls(arr, name, options)
    if len(arr) == 0:
        return torch.from_numpy(np.empty(0, dtype=t.to_pandas_dtype()))
    return torch.from_dlpack(arr)


def _fixed_size_tensor(arr: pa.Array, name: str, options: TensorOptions) -> torch.Tensor:
    """An n-d tensor of (nested) fixed-size lists without null lists: ``(rows, d1, ...)``."""
    shape = [len(arr)]
    values = arr
    while pa.types.is_fixed_size_list(values.type):
        if values.null_count:
            raise FeederError(f"column {name!r} has null lists nested inside fixed-size lists")
        shape.append(values.type.list_size)
        values = values.flatten()
    return _flat_tensor(values, name, options).reshape(shape)


def _fixed_size_list_nulls(arr: pa.Array, name: str, options: TensorOptions) -> pa.Array:
    """Replace null fixed-size lists of numbers by lists of ``fill_value`` (FILL), or raise."""
    if options.nulls is NullPolicy.ERROR or not _is_number(arr.type.value_type):
        raise FeederError(
            f"column {name!r} has {arr.null_count} null list(s) in this batch; tensors cannot "
            "hold nulls: pass nulls='fill' (fixed-size lists of numbers only) or filter them out"
        )
    size = arr.type.list_size
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    flat = arr.values.slice(arr.offset * size, len(arr) * size)
    matrix = np.array(
        _no_nulls(flat, name, options).to_numpy(zero_copy_only=False), copy=True
    ).reshape(len(arr), size)
    matrix[~valid] = options.fill_value
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), type=flat.type), size)


def _tensor_extension(arr: pa.ExtensionArray, name: str, options: TensorOptions) -> torch.Tensor:
    """``arrow.fixed_shape_tensor`` → ``(rows, *shape)``."""
    t = arr.type
    if arr.null_count:
        storage = _fixed_size_list_nulls(arr.storage, name, options)
        arr = pa.ExtensionArray.from_storage(t, storage)
    permutation = t.permutation
    if permutation is not None and list(permutation) != sorted(permutation):
        return torch.from_numpy(np.ascontiguousarray(arr.to_numpy_ndarray()))
    values = arr.storage.flatten()
    return _flat_tensor(values, name, options).reshape([len(arr), *t.shape])


def _var_list(arr: pa.Array, name: str, options: TensorOptions) -> dict[str, Any]:
    """Variable-length list → padded tensor + lengths, or a jagged nested tensor."""
    if arr.null_count:
        if options.nulls is NullPolicy.ERROR:
            _no_nulls(arr, name, options)
        arr = pc.fill_null(arr, pa.scalar([], type=arr.type))  # a null list becomes empty
    if not (_is_number(arr.type.value_type) or pa.types.is_boolean(arr.type.value_type)):
        raise FeederError(
            f"column {name!r}: lists of {arr.type.value_type} cannot become a tensor "
            "(only lists of numbers or bools)"
        )
    offsets = np.asarray(arr.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    values = _flat_tensor(arr.flatten(), name, options)
    offsets = offsets - offsets[0]
    lengths = np.diff(offsets)
    if options.lists is ListPolicy.NESTED:
        return {name: torch.nested.nested_tensor_from_jagged(values, torch.from_numpy(offsets))}
    rows = len(arr)
    width = int(lengths.max()) if rows else 0
    padded = torch.full((rows, width), options.pad_value, dtype=values.dtype)
    if values.numel():
        row_idx = torch.from_numpy(np.repeat(np.arange(rows), lengths))
        col_idx = torch.from_numpy(np.arange(len(values)) - np.repeat(offsets[:-1], lengths))
        padded[row_idx, col_idx] = values
    return {name: padded, name + LENGTHS_SUFFIX: torch.from_numpy(lengths)}


def column_to_tensors(
    name: str, arr: pa.Array | pa.ChunkedArray, options: TensorOptions
) -> dict[str, Any]:
    """Convert one column; returns ``{}`` (dropped), ``{name: x}`` or ``{name, name_lengths}``.

    Raises :class:`~jobs.errors.FeederError` for nulls (with ``nulls=ERROR``) and
    for types that have no tensor form.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if _is_stringy(t):
        if options.strings is StringPolicy.DROP:
            return {}
        return {name: arr.to_pylist()}
    if isinstance(t, pa.FixedShapeTensorType):
        return {name: _tensor_extension(arr, name, options)}
    if isinstance(t, pa.BaseExtensionType):
        return column_to_tensors(name, arr.storage, options)
    if pa.types.is_fixed_size_list(t):
        if arr.null_count:
            arr = _fixed_size_list_nulls(arr, name, options)
        return {name: _fixed_size_tensor(arr, name, options)}
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _var_list(arr, name, options)
    if pa.types.is_dictionary(t):
        return column_to_tensors(name, arr.dictionary_decode(), options)
    return {name: _flat_tensor(arr, name, options)}


def _place(value: Any, options: TensorOptions) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    if options.pin_memory and _can_pin():
        value = value.pin_memory()
    if options.device is not None:
        value = value.to(options.device, non_blocking=options.pin_memory)
    return value


_pin_warned = False


def _can_pin() -> bool:
    global _pin_warned
    if torch.cuda.is_available():
        return True
    if not _pin_warned:
        log.warning("pin_memory=True ignored: no accelerator is available")
        _pin_warned = True
    return False


def _convert_into(
    out: Batch, name: str, column: pa.Array, names: list[str], options: TensorOptions
) -> None:
    """Add ``column``'s tensors (or list) to ``out``; raise if a ``_lengths`` key collides."""
    converted = column_to_tensors(name, column, options)
    for key in converted:
        if key != name and key in names:
            raise FeederError(
                f"column {name!r}: its lengths key {key!r} collides with a column; "
                "rename the column or use lists='nested'"
            )
    out.update(converted)


def is_plain(column: pa.Array) -> bool:
    """A column of numbers without nulls: exported as is through DLPack, zero-copy."""
    return column.type.id in _NUMBER_TYPE_IDS and column.null_count == 0 and len(column) > 0


def batch_to_tensors(
    batch: pa.RecordBatch | pa.Table, options: TensorOptions | None = None
) -> Batch:
    """Convert every column of ``batch`` to tensors (or lists) per ``options``.

    Keys are the column names, plus ``"<name>_lengths"`` for padded variable-length
    lists. Raises :class:`~jobs.errors.FeederError` for nulls (default policy) and
    unsupported types, and when a ``_lengths`` key would collide with a column.
    """
    options = options or TensorOptions()
    out: Batch = {}
    names = batch.schema.names
    for name, column in zip(names, batch.columns, strict=True):
        if is_plain(column):
            out[name] = torch.from_dlpack(column)  # fast path: plain numbers, zero-copy
            continue
        _convert_into(out, name, column, names, options)
    if options.pin_memory or options.device is not None:
        out = {k: _place(v, options) for k, v in out.items()}
    return out


def split_to_tensors(
    batch: pa.RecordBatch,
    *,
    offset: int,
    count: int,
    size: int,
    options: TensorOptions | None = None,
) -> list[Batch]:
    """Convert ``count`` consecutive ``size``-row pieces of ``batch``, from row ``offset``.

    The same batches as ``batch_to_tensors(batch.slice(offset + i * size, size))`` for
    each ``i``, cheaper: a plain numeric column is exported once and split into views
    (zero-copy, one call for all pieces), so the per-batch cost does not grow with
    the number of columns; other columns are converted piece by piece. Raises as
    :func:`batch_to_tensors` does, and SpecError for a range outside ``batch``.
    """
    if count < 0 or size < 1 or offset < 0 or offset + count * size > batch.num_rows:
        raise SpecError(
            f"{count} pieces of {size} rows from row {offset} do not fit in {batch.num_rows} rows"
        )
    if count == 0:
        return []
    options = options or TensorOptions()
    names = batch.schema.names
    columns = batch.columns
    stop = offset + count * size
    views: list[tuple[torch.Tensor, ...] | None] = [
        # one (count, size) view, unbound: cheaper than split()'s Python wrapper
        torch.from_dlpack(column)[offset:stop].view(count, size).unbind(0)
        if is_plain(column)
        else None
        for column in columns
    ]
    place = options.pin_memory or options.device is not None
    if not place and all(v is not None for v in views):
        return [dict(zip(names, parts, strict=True)) for parts in zip(*views, strict=True)]  # type: ignore[arg-type]
    out: list[Batch] = []
    for i in range(count):
        piece: Batch = {}
        for name, column, view in zip(names, columns, views, strict=True):
            if view is not None:
                piece[name] = view[i]
            else:
                _convert_into(piece, name, column.slice(offset + i * size, size), names, options)
        if place:
            piece = {k: _place(v, options) for k, v in piece.items()}
        out.append(piece)
    return out


def options_from(mapping: Mapping[str, Any] | None) -> TensorOptions:
    """Build :class:`TensorOptions` from keyword arguments (unknown keys → SpecError)."""
    mapping = dict(mapping or {})
    known = set(TensorOptions.__dataclass_fields__)
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise SpecError(f"unknown tensor option(s) {unknown}; valid: {sorted(known)}")
    return TensorOptions(**mapping)
