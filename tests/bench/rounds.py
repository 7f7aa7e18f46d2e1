"""Paired per-round ratios of interleaved benchmark cases."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def round_ratios(reference: Sequence[float], case: Sequence[float]) -> tuple[list[float], float]:
    """Per round, ``reference``'s seconds ÷ ``case``'s (``case``'s speed relative to the
    reference measured in the same round), rounded to 3 places, and their median."""
    ratios = [r / c for r, c in zip(reference, case, strict=True)]
    return [round(x, 3) for x in ratios], round(statistics.median(ratios), 3)
