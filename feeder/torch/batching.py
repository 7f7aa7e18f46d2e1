"""Re-cut a stream of Arrow record batches into batches of exactly ``batch_size`` rows.

:func:`rebatch` yields record batches; :func:`tensor_batches` converts them to
tensors on the way, grouped by incoming record batch, which is what the
prefetch thread of :class:`feeder.torch.dataset.FeederDataset` hands to the consumer:
one hand-over (and one DLPack export per column) per incoming record batch,
not per training batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import pyarrow as pa
import torch

from feeder.torch.tensors import Batch, TensorOptions, batch_to_tensors, is_plain, split_to_tensors
from jobs.errors import SpecError


def rebatch(
    batches: Iterable[pa.RecordBatch], batch_size: int, *, drop_last: bool
) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream of record batches into batches of exactly ``batch_size`` rows.

    The last batch may be shorter unless ``drop_last``. A batch that lies inside one
    incoming batch is a zero-copy slice; one that straddles incoming batches is
    concatenated (a copy).
    """
    if batch_size < 1:
        raise SpecError(f"batch_size {batch_size} must be >= 1")
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for incoming in batches:
        offset = 0
        n = incoming.num_rows
        while offset < n:
            if pending_rows == 0 and n - offset >= batch_size:
                yield incoming.slice(offset, batch_size)
                offset += batch_size
                continue
            take = min(batch_size - pending_rows, n - offset)
            pending.append(incoming.slice(offset, take))
            pending_rows += take
            offset += take
            if pending_rows == batch_size:
                yield _concat(pending)
                pending, pending_rows = [], 0
    if pending_rows and not drop_last:
        yield _concat(pending)


def tensor_batches(
    batches: Iterable[pa.RecordBatch],
    batch_size: int,
    *,
    drop_last: bool,
    options: TensorOptions | None = None,
) -> Iterator[list[tuple[int, Batch]]]:
    """:func:`rebatch`, converted with :func:`feeder.torch.tensors.batch_to_tensors`, grouped.

    Yields, per incoming record batch that completes at least one batch, the list of
    ``(rows, batch)`` it completes, in order (the same batches as rebatching then
    converting one by one). Batches inside one incoming batch are zero-copy views
    (:func:`feeder.torch.tensors.split_to_tensors`); one that straddles incoming batches
    is concatenated first (a copy). Raises SpecError for ``batch_size < 1``.
    """
    if batch_size < 1:
        raise SpecError(f"batch_size {batch_size} must be >= 1")
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for incoming in batches:
        n = incoming.num_rows
        offset = 0
        group: list[tuple[int, Batch]] = []
        if pending_rows:
            offset = min(batch_size - pending_rows, n)
            if offset:
                pending.append(incoming.slice(0, offset))
                pending_rows += offset
            if pending_rows == batch_size:
                group.append((batch_size, _joined(pending, options)))
                pending, pending_rows = [], 0
        whole = (n - offset) // batch_size
        if whole:
            pieces = split_to_tensors(
                incoming, offset=offset, count=whole, size=batch_size, options=options
            )
            group.extend((batch_size, piece) for piece in pieces)
            offset += whole * batch_size
        if offset < n:
            pending.append(incoming.slice(offset))
            pending_rows += n - offset
        if group:
            yield group
    if pending_rows and not drop_last:
        yield [(pending_rows, _joined(pending, options))]


def _joined(parts: Sequence[pa.RecordBatch], options: TensorOptions | None) -> Batch:
    """One batch of ``parts`` (consecutive pieces of the stream), converted.

    Plain numeric columns are joined as tensors (one copy, ``torch.cat``); a batch with
    any other column is concatenated as Arrow first, then converted.
    """
    placed = options is not None and (options.pin_memory or options.device is not None)
    if not placed and len(parts) > 1 and all(is_plain(c) for p in parts for c in p.columns):
        return {
            name: torch.cat([torch.from_dlpack(part.column(i)) for part in parts])
            for i, name in enumerate(parts[0].schema.names)
        }
    return batch_to_tensors(_concat(parts), options)


def _concat(parts: Sequence[pa.RecordBatch]) -> pa.RecordBatch:
    if len(parts) == 1:
        return parts[0]
    return pa.Table.from_batches(parts).combine_chunks().to_batches()[0]
