"""The icefeed feeder: Arrow IPC slice cache on Spark executors, served over Arrow Flight.

Roles, one sub-package each (imports point downward only):

- ``feeder.protocol``: the wire — typed messages, tickets, chunking, the epoch order;
- ``feeder.coordinator``: the driver side — session (``serve``), planning, leases, nodes;
- ``feeder.node``: the data node — Flight server, slice cache, materialisation;
- ``feeder.client``: ``FeederClient`` (no pyspark, no pyiceberg);
- ``feeder.torch``: ``FeederDataset`` and tensors.

``feeder.serve`` (needs pyspark) is imported lazily, so ``import feeder.client``
on a training pod stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feeder.coordinator.session import Feeder, serve

__all__ = ["Feeder", "serve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from feeder.coordinator import session

        return getattr(session, name)
    raise AttributeError(f"module 'feeder' has no attribute {name!r}")
