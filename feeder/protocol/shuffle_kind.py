"""Which epoch order a consumer asks for: the ``shuffle`` option, as an Enum.

Strings and booleans exist only at the edge (``FeederDataset(shuffle=...)``, the
JSON of a request): :func:`parse_shuffle` converts them once. ``True`` means the
default shuffle, :attr:`Shuffle.MIX`; ``False`` means table order.
"""

from __future__ import annotations

import enum

from jobs.errors import SpecError


class Shuffle(enum.Enum):
    """The epoch orders a feeder serves (PROTOCOL.md, *Epoch order*).

    ``OFF``: table order. ``SLICE``: slices permuted, rows permuted inside a slice
    (a batch holds the rows of one slice). ``MIX``: every batch draws from the whole
    table (:mod:`feeder.protocol.mix`); what ``shuffle=True`` means.
    """

    OFF = "off"
    SLICE = "slice"
    MIX = "mix"

    @property
    def shuffled(self) -> bool:
        """Whether rows leave table order."""
        return self is not Shuffle.OFF


#: what ``shuffle=True`` means
DEFAULT_SHUFFLE = Shuffle.MIX


def parse_shuffle(value: object) -> Shuffle:
    """Return the :class:`Shuffle` a user or a request names.

    Accepts a :class:`Shuffle`, ``True`` (:data:`DEFAULT_SHUFFLE`), ``False``
    (``OFF``) or one of the strings ``"off"``, ``"slice"``, ``"mix"``.
    Raises SpecError for anything else.
    """
    if isinstance(value, Shuffle):
        return value
    if value is True:
        return DEFAULT_SHUFFLE
    if value is False:
        return Shuffle.OFF
    if isinstance(value, str):
        try:
            return Shuffle(value)
        except ValueError:
            pass
    raise SpecError(f"shuffle: {value!r} must be true, false or one of 'off', 'slice', 'mix'")
