"""resolve_world: explicit rank/world_size, else torch.distributed, else env, else 0/1."""

from __future__ import annotations

import pytest

from feeder.torch.world import resolve_world
from jobs.errors import SpecError


def test_resolve_world_prefers_explicit_then_env(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert resolve_world(None, None) == (3, 4)
    assert resolve_world(1, 2) == (1, 2)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert resolve_world(None, None) == (0, 1)
    with pytest.raises(SpecError, match=r"rank 2 must be in \[0, world_size=2\)"):
        resolve_world(2, 2)
