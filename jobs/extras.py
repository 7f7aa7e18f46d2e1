"""Lazy import of optional dependencies, with an error that names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from jobs.errors import MissingExtraError


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``extra``.

    ``require("pyspark", "spark")`` returns the pyspark module, or tells the
    user to ``pip install 'icefeed[spark]'``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{module!r} is not installed; install it with: pip install 'icefeed[{extra}]'"
        ) from exc
