"""Resume state: versioned, validated, JSON round-trip, compatibility rules."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeder.protocol.elastic import Progress
from feeder.protocol.modes import Mode
from feeder.torch.resume import STATE_VERSION, ResumeState, merge_worker_states
from jobs.errors import SpecError


def _state(**over):
    base = dict(
        job="train",
        epoch=2,
        rows_consumed=128,
        seed=7,
        shuffle=True,
        world_size=2,
        rank=1,
        num_workers=2,
        worker=0,
        batch_size=64,
        drop_last=True,
        mode=Mode.STATIC,
    )
    base.update(over)
    return ResumeState(**base)


@settings(deadline=None)
@given(
    epoch=st.integers(0, 10**6),
    rows=st.integers(0, 10**12),
    seed=st.integers(0, 2**63),
    world=st.integers(1, 64),
    workers=st.integers(1, 16),
    batch=st.integers(1, 10**5),
    mode=st.sampled_from(list(Mode)),
)
def test_json_roundtrip(epoch, rows, seed, world, workers, batch, mode):
    state = _state(
        epoch=epoch,
        rows_consumed=rows,
        seed=seed,
        world_size=world,
        rank=world - 1,
        num_workers=workers,
        worker=workers - 1,
        batch_size=batch,
        mode=mode,
    )
    data = json.loads(json.dumps(state.to_dict()))
    assert data["version"] == STATE_VERSION
    assert ResumeState.from_dict(data) == state


def test_mode_accepts_its_string_value():
    assert _state(mode="dynamic").mode is Mode.DYNAMIC


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"version": 4}, "version 4 is not supported"),
        ({"snapshot_id": "7"}, "snapshot_id"),
        ({"delivered": (1,)}, r"resume_from.delivered: .* list of 2"),
        ({"rows_consumed": -1}, "rows_consumed: -1 must be an integer >= 0"),
        ({"epoch": 1.5}, "epoch: 1.5"),
        ({"rank": 2}, "rank 2 must be < world_size 2"),
        ({"worker": 2}, "worker 2 must be < num_workers 2"),
        ({"batch_size": 0}, "batch_size: 0"),
        ({"mode": "elastic"}, "mode: 'elastic'"),
        ({"shuffle": "yes"}, "shuffle: 'yes' is not one of 'off', 'slice', 'mix'"),
        ({"job": ""}, "job"),
    ],
)
def test_invalid_states_are_refused_with_the_field_named(override, message):
    with pytest.raises(SpecError, match=message):
        _state(**override)


def test_from_dict_refuses_foreign_dicts():
    with pytest.raises(SpecError, match="no 'version'"):
        ResumeState.from_dict({"epoch": 1})
    with pytest.raises(SpecError, match="must be a dict"):
        ResumeState.from_dict([1, 2])  # type: ignore[arg-type]
    data = _state().to_dict()
    data["extra"] = 1
    del data["seed"]
    with pytest.raises(SpecError, match=r"missing fields \['seed'\], unknown fields \['extra'\]"):
        ResumeState.from_dict(data)
    with pytest.raises(SpecError, match="version 9"):
        ResumeState.from_dict({**_state().to_dict(), "version": 9})


def test_mid_epoch_resume_with_another_order_or_batch_size_is_a_clear_error():
    saved = _state()
    with pytest.raises(SpecError, match=r"batch_size was 64 .* but is 32 now"):
        saved.check_compatible(_state(batch_size=32))
    with pytest.raises(SpecError, match="seed"):
        saved.check_compatible(_state(seed=8))
    assert saved.resume_plan(_state(rows_consumed=0)) == (128, None)


def test_a_lone_worker_state_cannot_resume_at_another_shape():
    with pytest.raises(SpecError, match="merge the states of all 2 workers"):
        _state().check_compatible(_state(world_size=4, rows_consumed=0))


def test_a_rank_state_resumes_elastically_at_any_shape():
    workers = [_state(worker=w, rows_consumed=c).to_dict() for w, c in ((1, 64), (0, 128))]
    merged = ResumeState.from_dict(merge_worker_states(workers))
    assert merged.delivered == (128, 64) and merged.rows_consumed == 192
    skip, progress = merged.resume_plan(_state(world_size=3, rank=2, num_workers=1, worker=0))
    assert skip == 0
    assert progress == Progress(
        world_size=2, num_workers=2, unit=64, drop_last=True, delivered=(128, 64)
    )
    # the same shape too: a merged state is never a plain skip
    assert merged.resume_plan(_state(worker=1))[1] == progress
    single = _state(num_workers=1, worker=0, rows_consumed=50)
    assert single.resume_plan(_state(world_size=1, rank=0, num_workers=3, worker=2))[1] == Progress(
        world_size=2, num_workers=1, unit=64, drop_last=True, delivered=(50,)
    )


def test_an_elastically_resumed_iteration_resumes_only_at_its_own_shape():
    origin = Progress(world_size=2, num_workers=1, unit=64, drop_last=True, delivered=(64,))
    saved = _state(num_workers=1, worker=0, resume_from=origin)
    again = ResumeState.from_dict(json.loads(json.dumps(saved.to_dict())))
    assert again == saved
    assert saved.resume_plan(_state(num_workers=1, worker=0, rows_consumed=0)) == (128, origin)
    with pytest.raises(SpecError, match="itself resumed elastically"):
        saved.check_compatible(_state(world_size=3, num_workers=1, worker=0))


def test_dynamic_mode_cannot_resume_at_another_shape():
    with pytest.raises(SpecError, match="dynamic mode"):
        _state(mode="dynamic", num_workers=1, worker=0).check_compatible(
            _state(mode="dynamic", world_size=3, num_workers=1, worker=0)
        )


def test_merge_refuses_states_that_are_not_one_rank_s_workers():
    with pytest.raises(SpecError, match=r"got workers \[0, 0\]"):
        merge_worker_states([_state().to_dict(), _state().to_dict()])
    with pytest.raises(SpecError, match="rank differs"):
        merge_worker_states([_state().to_dict(), _state(worker=1, rank=0).to_dict()])
    with pytest.raises(SpecError, match="no states"):
        merge_worker_states([])


def test_version_1_and_2_states_are_still_read():
    data = _state().to_dict()
    del data["delivered"], data["resume_from"], data["snapshot_id"]
    data["version"] = 1
    state = ResumeState.from_dict(data)
    assert state.version == STATE_VERSION == 3
    assert state.delivered is None and state.resume_from is None and state.snapshot_id is None
    v2 = {**_state().to_dict(), "version": 2}
    del v2["snapshot_id"]
    assert ResumeState.from_dict(v2).snapshot_id is None


def test_the_state_names_the_snapshot_of_its_epoch():
    state = ResumeState.from_dict({**_state().to_dict(), "snapshot_id": 2**62})
    assert state.snapshot_id == 2**62 and state.to_dict()["snapshot_id"] == 2**62


def test_epoch_boundary_resume_allows_a_new_shape():
    saved = _state(rows_consumed=0)
    saved.check_compatible(_state(world_size=8, rank=5, num_workers=1, worker=0, batch_size=3))
    with pytest.raises(SpecError, match="job"):
        saved.check_compatible(_state(job="other"))


def test_a_boolean_shuffle_of_an_older_state_means_what_it_meant_then():
    """Before MIX, shuffle=True was the slice-local order: such a state resumes only
    a slice-ordered dataset mid-epoch."""
    assert _state(shuffle=True).shuffle == "slice"
    assert _state(shuffle=False).shuffle == "off"
    with pytest.raises(SpecError, match="shuffle"):
        _state(shuffle=True).check_compatible(_state(shuffle="mix"))
    _state(shuffle=True).check_compatible(_state(shuffle="slice"))
