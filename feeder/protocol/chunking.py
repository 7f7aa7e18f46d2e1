"""Where a data node cuts the Arrow batches of a stream, so the consumer's batches do not straddle.

A consumer that re-batches a stream into ``unit``-row batches (``FeederDataset``)
gets each of them as zero-copy views when it lies inside one incoming Arrow batch;
one that straddles two incoming batches has to be copied. A node cuts a range into
batches of at most ``batch_rows`` rows from the range's start, so as soon as one
range's length is not a multiple of ``unit`` (the last range of a slice, usually),
every later cut falls off the consumer's grid and every one of its batches
straddles: one copy per incoming Arrow batch instead of one per range.

The client therefore tells the node where its grid is, in the ``x-icefeed-chunks``
header of ``do_get``: ``lead,unit`` — the consumer still needs ``lead`` rows to
complete its current batch, and re-batches in ``unit`` rows. The node then sends
the first ``lead`` rows as a batch of their own and cuts the rest in multiples of
``unit``. The hint only moves cuts, never rows, so it is not part of the signed
ticket; a malformed one is refused (a Flight error), a missing one means ``0,1``.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.errors import FeederError

#: the ``do_get`` header carrying :meth:`Chunking.header_value`
CHUNKS_HEADER = "x-icefeed-chunks"
#: the largest ``unit`` a hint may name (as for a static request's ``unit``)
MAX_UNIT = 2**31


@dataclass(frozen=True)
class Chunking:
    """The consumer's batch grid: ``lead`` rows to its next boundary, then every ``unit``."""

    lead: int = 0
    unit: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.unit <= MAX_UNIT or not 0 <= self.lead < self.unit:
            raise FeederError(
                f"chunking lead={self.lead}, unit={self.unit}: need 1 <= unit <= {MAX_UNIT} "
                "and 0 <= lead < unit"
            )

    @classmethod
    def at(cls, position: int, unit: int) -> Chunking:
        """The grid of a consumer that has received ``position`` rows, in ``unit``-row batches."""
        unit = max(1, unit)
        return cls(lead=-position % unit, unit=unit)

    def header_value(self) -> str:
        """``lead,unit``, as sent in :data:`CHUNKS_HEADER`."""
        return f"{self.lead},{self.unit}"

    def sizes(self, rows: int, max_rows: int) -> list[int]:
        """The batch lengths to cut ``rows`` rows into, each at most ``max(max_rows, lead)``.

        ``lead`` rows first (if any), then the largest multiple of ``unit`` that fits
        in ``max_rows``; plain ``max_rows`` pieces when ``unit`` is 1 or larger than
        ``max_rows`` (the consumer's batches span several pieces anyway).
        """
        if rows <= 0:
            return []
        step = (max_rows // self.unit) * self.unit if 1 < self.unit <= max_rows else max_rows
        step = max(1, step)
        out: list[int] = []
        done = 0
        if self.lead and self.unit <= max_rows:
            out.append(min(self.lead, rows))
            done = out[0]
        while done < rows:
            out.append(min(step, rows - done))
            done += out[-1]
        return out


def parse_chunking(value: str | None) -> Chunking:
    """The :class:`Chunking` of a ``lead,unit`` header value (None: no hint, ``0,1``).

    Raises FeederError naming the header for anything else.
    """
    if value is None:
        return Chunking()
    parts = value.split(",")
    if len(value) > 40 or len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise FeederError(
            f"{CHUNKS_HEADER} header {value[:40]!r} is not 'lead,unit' (two non-negative integers)"
        )
    try:
        return Chunking(lead=int(parts[0]), unit=int(parts[1]))
    except FeederError as exc:
        raise FeederError(f"{CHUNKS_HEADER} header {value[:40]!r}: {exc}") from None
