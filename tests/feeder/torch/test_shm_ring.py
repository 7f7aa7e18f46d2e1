"""Reused hand-over segments: reused only once released, a held batch never rewritten."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from multiprocessing.reduction import ForkingPickler

import pytest

from feeder.torch import shm_ring
from feeder.torch.handover import BatchGroup, SharedGroup, grouped, pack_reused
from tests.feeder.torch.test_handover import _batch, pins_like_torch


def _received(group: SharedGroup) -> SharedGroup:
    """The group as the main process receives it from a worker (pickled through the
    DataLoader's queue)."""
    back = pickle.loads(ForkingPickler.dumps(group))
    assert isinstance(back, SharedGroup)
    return back


def test_a_segment_is_reused_only_once_every_view_of_it_is_gone(tmp_path):
    ring = shm_ring.Ring(directory=str(tmp_path), max_segments=4)
    first = pack_reused([_batch(0, 50), _batch(50, 50)], ring)
    assert first is not None
    held = next(_received(first).batches())  # a batch the training step keeps
    kept_slice = held["id"][10:20]  # and a view of it
    del held
    want = list(range(10, 20))
    second = pack_reused([_batch(1000, 50), _batch(1050, 50)], ring)
    assert second is not None and second.ref.path != first.ref.path  # still viewed
    assert kept_slice.tolist() == want
    del kept_slice  # the last view: the first segment is released
    third = pack_reused([_batch(2000, 100)], ring)
    assert third is not None and third.ref.path == first.ref.path  # reused
    assert next(_received(third).batches())["id"][:3].tolist() == [2000, 2001, 2002]
    assert ring.segments == 2
    ring.remove()


def test_a_batch_held_while_the_worker_goes_on_is_never_written_again(tmp_path, monkeypatch):
    ring = shm_ring.Ring(directory=str(tmp_path), max_segments=3)
    monkeypatch.setattr(shm_ring, "_ring", ring)  # the worker's ring: grouped() takes it
    groups = grouped(iter([_batch(i * 10, 10) for i in range(40)]), 2)
    first = _received(next(groups))
    held = [b["id"].clone() for b in first.batches()]
    kept = list(first.batches())  # asked twice: the same views, one release
    assert kept[0]["id"].data_ptr() == next(first.batches())["id"].data_ptr()
    del first
    for group in groups:  # the worker goes on; each group is read and dropped
        assert isinstance(group, SharedGroup)
        assert len(list(_received(group).batches())) == 2
    assert ring.segments == 2  # one held by `kept`, one reused for all the others
    assert [b["id"].tolist() for b in kept] == [h.tolist() for h in held]
    ring.remove()


def test_a_worker_whose_segments_are_all_held_falls_back_to_a_fresh_segment(tmp_path, monkeypatch):
    ring = shm_ring.Ring(directory=str(tmp_path), max_segments=2)
    kept = [_received(pack_reused([_batch(i, 4)], ring)).attach() for i in range(2)]
    assert pack_reused([_batch(9, 4)], ring) is None
    monkeypatch.setattr(shm_ring, "_ring", ring)
    (group,) = grouped(iter([_batch(9, 4)]), 4)
    assert isinstance(group, BatchGroup) and group.storage.is_shared()
    assert next(group.batches())["id"].tolist() == [9, 10, 11, 12]
    assert len(kept) == 2
    ring.remove()


def test_a_group_received_and_dropped_unread_gives_its_segment_back(tmp_path):
    """A DataLoader iterator closed with groups in flight drops them unread."""
    ring = shm_ring.Ring(directory=str(tmp_path), max_segments=1)
    group = pack_reused([_batch(0, 8)], ring)
    assert group is not None
    del group  # the worker's own object: no release (it is the main process's to give)
    assert pack_reused([_batch(0, 8)], ring) is None
    ring2 = shm_ring.Ring(directory=str(tmp_path), max_segments=1)
    received = _received(pack_reused([_batch(0, 8)], ring2))
    assert pack_reused([_batch(0, 8)], ring2) is None
    del received
    assert pack_reused([_batch(0, 8)], ring2) is not None
    ring.remove()
    ring2.remove()


_WORKER = """
import sys, pickle
from multiprocessing.reduction import ForkingPickler
import pytest
import torch
from feeder.torch import shm_ring
from feeder.torch.handover import pack_reused
ring = shm_ring.Ring(directory=sys.argv[1])
group = pack_reused([{"id": torch.arange(100)}], ring)
wire = bytes(ForkingPickler.dumps(group))
sys.stdout.buffer.write(len(wire).to_bytes(4, "big") + wire)
sys.stdout.flush()
sys.stdin.read()  # killed here
"""


def _worker_and_what_it_sent(directory: str) -> tuple[subprocess.Popen[bytes], bytes]:
    """A worker process that wrote one group, and the group as it crosses (pickled)."""
    worker = subprocess.Popen(
        [sys.executable, "-c", _WORKER, directory], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert worker.stdout is not None
    return worker, worker.stdout.read(int.from_bytes(worker.stdout.read(4), "big"))


def test_a_group_received_before_its_worker_exits_is_read_after_the_worker_is_gone(tmp_path):
    """torch tells a worker to exit as soon as its end-of-data mark arrives, while groups
    it sent earlier may still wait to be yielded in order; the exiting worker removes its
    files (seen in CI as a FileNotFoundError when the group was attached)."""
    worker, wire = _worker_and_what_it_sent(str(tmp_path))
    group = pickle.loads(wire)  # received: torch's queue unpickles as it reads
    assert worker.stdin is not None
    worker.stdin.close()  # the worker exits normally and removes its files
    assert worker.wait() == 0
    assert os.listdir(tmp_path) == []
    assert next(group.batches())["id"].tolist() == list(range(100))
    del group
    shm_ring.forget_gone()


def test_a_group_whose_segment_is_gone_when_received_says_so_where_it_is_read(tmp_path):
    worker, wire = _worker_and_what_it_sent(str(tmp_path))
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    for name in os.listdir(tmp_path):  # a killed worker's files, removed by someone
        os.unlink(tmp_path / name)
    group = pickle.loads(wire)  # received anyway: the queue raises nothing
    with pytest.raises(RuntimeError, match="was killed before the main process received it"):
        group.attach()
    del group  # nothing to give back, and no error


def test_the_files_of_a_killed_worker_are_removed_when_the_iteration_ends(tmp_path):
    worker, wire = _worker_and_what_it_sent(str(tmp_path))
    group = pickle.loads(wire)
    assert sorted(os.listdir(tmp_path)) and all(
        name.startswith(f"icefeed-handover-{worker.pid}-") for name in os.listdir(tmp_path)
    )
    batch = next(group.batches())
    assert batch["id"].tolist() == list(range(100))
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert os.listdir(tmp_path)  # killed: it removed nothing
    mapped = shm_ring.mapped()  # its segment and its board among them
    shm_ring.forget_gone()
    assert shm_ring.mapped() == mapped - 2  # no mapping of a gone worker is kept
    assert os.listdir(tmp_path) == []
    assert batch["id"].tolist() == list(range(100))  # the mapping outlives the file
    del batch, group


def test_shared_groups_pin_through_torchs_pin_memory_thread(tmp_path):
    ring = shm_ring.Ring(directory=str(tmp_path), max_segments=1)
    received = _received(pack_reused([_batch(0, 4)], ring))
    if pins_like_torch(received) is not None:
        del received
        assert pack_reused([_batch(0, 4)], ring) is not None  # released by the copy
    ring.remove()


def test_the_main_process_maps_only_its_own_users_private_segment_files(tmp_path):
    """A file another user made, or one others may read or write, under a segment's
    name is refused: batches never come from (or go to) someone else's file."""
    ring = shm_ring.Ring(directory=str(tmp_path), max_segments=2)
    group = pack_reused([_batch(0, 4)], ring)
    assert group is not None
    assert os.stat(group.ref.path).st_mode & 0o777 == 0o600
    forged = tmp_path / "icefeed-handover-1-forged-0"
    forged.write_bytes(bytes(4096))
    for mode, owner in ((0o644, os.geteuid()), (0o600, os.geteuid() + 1)):
        os.chmod(forged, mode)
        if owner != os.geteuid():
            if os.geteuid() != 0:
                continue  # only root can give a file to another user here
            os.chown(forged, owner, -1)
        ref = shm_ring.SegmentRef(str(forged), 4096, group.ref.board, group.ref.index)
        with pytest.raises(PermissionError, match="refusing to read batches"):
            shm_ring.attach(ref, 64)
    ring.remove()
    assert os.listdir(tmp_path) == ["icefeed-handover-1-forged-0"]
