"""How a job's rows are split among its consumers (PROTOCOL.md, *Modes*)."""

from __future__ import annotations

import enum


class Mode(enum.Enum):
    """``STATIC``: each rank computes its fixed share (DDP). ``DYNAMIC``: consumers lease work."""

    STATIC = "static"
    DYNAMIC = "dynamic"
