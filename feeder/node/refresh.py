"""A data node's side of a refresh: open a source per snapshot, apply the coordinator's news.

A following feeder serves several snapshots of its table at once over one space of
slice ids (PROTOCOL.md, *Refresh*). Its ``register`` answer lists a source per live
snapshot; a ``node_heartbeat`` answer after a refresh carries the new snapshot's
source and plans, the slices to drop and the snapshots retired.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from feeder.node.credentials import node_io_properties
from feeder.node.materialize import SliceSource
from feeder.protocol.node_messages import NodeHeartbeatAnswer, RegisterAnswer, SnapshotSource
from jobs.errors import FeederError

if TYPE_CHECKING:
    from feeder.node.datanode import DataNode

log = logging.getLogger(__name__)


class SourceOpener:
    """Opens a :class:`SliceSource` per snapshot with the session's filter, columns and IO."""

    def __init__(self, answer: RegisterAnswer) -> None:
        self.io_properties = node_io_properties(answer.io_properties, os.environ)
        self.row_filter = answer.row_filter
        self.columns = answer.columns

    def open(self, source: SnapshotSource) -> SliceSource:
        """The source reading ``source``'s snapshot (its metadata file is read now)."""
        return SliceSource.from_metadata(
            source.metadata_location,
            io_properties=self.io_properties,
            snapshot_id=source.snapshot_id,
            row_filter=self.row_filter,
            columns=self.columns,
        )


def apply_refresh(node: DataNode, answer: NodeHeartbeatAnswer) -> None:
    """Serve a refresh's new snapshots and plans, drop retired snapshots and slices."""
    if answer.sources:
        opener = node.opener
        if opener is None:
            raise FeederError("a refresh reached a data node that never registered")
        by_id = {p.slice_id: p for p in answer.plans}
        for src in answer.sources:
            node.add_snapshot(
                snapshot_id=src.snapshot_id,
                source=opener.open(src),
                plans={s: by_id[s] for s in src.slices if s in by_id},
            )
            log.info(
                "data node: serving snapshot %s too (%d new slices)",
                src.snapshot_id,
                len(src.slices),
            )
    if answer.retired or answer.drop:
        node.retire(answer.retired, answer.drop)
