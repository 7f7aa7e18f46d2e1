"""Signed tickets: round trip, and every kind of tampering refused with AuthError."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feeder.protocol.shuffle_kind import Shuffle
from feeder.protocol.tickets import TicketClaims, TicketSigner, new_key
from jobs.errors import AuthError, RestartedError

claims_st = st.builds(
    lambda job, snap, slice_id, a, b, epoch, seed, shuffle, cols: TicketClaims(
        job=job,
        snapshot_id=snap,
        slice_id=slice_id,
        start=min(a, b),
        stop=max(a, b),
        epoch=epoch,
        seed=seed,
        shuffle=shuffle,
        columns=cols,
        block_rows=256 if shuffle is Shuffle.MIX else 0,
    ),
    st.text(min_size=1, max_size=20),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(0, 2**31),
    st.integers(0, 2**40),
    st.integers(0, 2**40),
    st.integers(0, 2**32 - 2),
    st.integers(0, 2**64 - 1),
    st.sampled_from([True, False, *Shuffle]),
    st.none() | st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=4).map(tuple),
)

SIGNER = TicketSigner(new_key())


def good() -> TicketClaims:
    return TicketClaims(
        job="j", snapshot_id=42, slice_id=3, start=0, stop=10, epoch=1, seed=7, shuffle=True
    )


def forge(payload: object, key: bytes) -> bytes:
    raw = json.dumps(payload).encode()
    mac = hmac.new(key, raw, hashlib.sha256).digest()
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")  # noqa: E731
    return enc(raw) + b"." + enc(mac)


@given(claims_st)
def test_sign_verify_round_trip(claims):
    assert SIGNER.verify(SIGNER.sign(claims)) == claims


@given(claims_st)
def test_the_payload_is_compact_sorted_json_and_the_mac_is_hmac_sha256(claims):
    """The cached-head signing writes exactly PROTOCOL.md's payload: compact JSON with
    sorted keys, every claim (the head cache keyed on all but the range) and the MAC."""
    raw = SIGNER.sign(claims)
    payload_b64, mac_b64 = raw.split(b".")
    unb64 = lambda b: base64.urlsafe_b64decode(b + b"=" * (-len(b) % 4))  # noqa: E731
    payload = unb64(payload_b64)
    decoded = json.loads(payload)
    assert payload == json.dumps(decoded, separators=(",", ":"), sort_keys=True).encode()
    assert decoded["slice"] == claims.slice_id and decoded["snap"] == claims.snapshot_id
    assert (decoded["start"], decoded["stop"]) == (claims.start, claims.stop)
    assert decoded["job"] == claims.job and decoded["seed"] == claims.seed
    assert unb64(mac_b64) == hmac.new(SIGNER._key, payload, hashlib.sha256).digest()


@given(claims_st, st.integers(0, 2**31), st.integers(0, 2**40), st.integers(0, 2**40))
def test_signing_a_range_of_a_template_is_signing_those_claims(template, slice_id, a, b):
    start, stop = min(a, b), max(a, b)
    claims = replace(template, slice_id=slice_id, start=start, stop=stop)
    assert SIGNER.sign_range(template, slice_id, start, stop) == SIGNER.sign(claims)
    assert SIGNER.verify(SIGNER.sign_range(template, slice_id, start, stop)) == claims


def test_tickets_of_one_job_differ_in_every_claim():
    """Two claims that differ in any one field sign to different payloads (the head
    cache must not hand one job's or epoch's head to another)."""
    base = good()
    changes = {
        "job": "k",
        "snapshot_id": 43,
        "slice_id": 4,
        "start": 1,
        "stop": 11,
        "epoch": 2,
        "seed": 8,
        "shuffle": Shuffle.OFF,
        "columns": ("a",),
    }
    signed = {SIGNER.sign(base)}
    for field, value in changes.items():
        changed = TicketClaims(**{**claims_dict_of(base), field: value})
        assert SIGNER.verify(SIGNER.sign(changed)) == changed
        signed.add(SIGNER.sign(changed))
    assert len(signed) == len(changes) + 1


def claims_dict_of(claims: TicketClaims) -> dict[str, object]:
    return {f: getattr(claims, f) for f in TicketClaims.__dataclass_fields__}


def test_ticket_from_another_key_is_refused():
    other = TicketSigner(new_key())
    with pytest.raises(RestartedError, match="the feeder was restarted") as refused:
        SIGNER.verify(other.sign(good()))
    assert other.session_id in str(refused.value) and SIGNER.session_id in str(refused.value)
    assert isinstance(refused.value, AuthError)


def test_a_forged_signature_of_this_session_is_a_bad_signature_not_a_restart():
    payload, _ = SIGNER.sign(good()).split(b".")
    with pytest.raises(AuthError, match="bad signature") as refused:
        SIGNER.verify(payload + b"." + b"A" * 43)
    assert not isinstance(refused.value, RestartedError)


def test_session_ids_are_public_derived_and_distinct():
    key = new_key()
    assert TicketSigner(key).session_id == TicketSigner(key).session_id
    assert len({TicketSigner(new_key()).session_id for _ in range(50)}) == 50
    assert key.hex()[:16] != TicketSigner(key).session_id


def test_short_key_is_refused():
    with pytest.raises(ValueError):
        TicketSigner(b"short")
    assert "hidden" in repr(SIGNER)


@pytest.mark.parametrize(
    "raw",
    [b"", b".", b"abc", b"a.b.c", b"!!!.???", b"x" * 70000, b"\x00\xff.\x01"],
)
def test_garbage_is_refused(raw):
    with pytest.raises(AuthError):
        SIGNER.verify(raw)


def test_truncated_and_bitflipped_tickets_are_refused():
    ticket = SIGNER.sign(good())
    for cut in range(len(ticket)):
        with pytest.raises(AuthError):
            SIGNER.verify(ticket[:cut])
    rnd = random.Random(0)
    for _ in range(2000):
        data = bytearray(ticket)
        i = rnd.randrange(len(data))
        data[i] ^= 1 << rnd.randrange(8)
        if bytes(data) == ticket:
            continue
        try:
            claims = SIGNER.verify(bytes(data))
        except AuthError:
            continue
        # a flip in base64 padding bits may decode to the same bytes: claims unchanged
        assert claims == good()


def test_not_bytes_is_refused():
    with pytest.raises(AuthError):
        SIGNER.verify("a.b")  # type: ignore[arg-type]


KEY = b"k" * 32
VALID = {
    "v": 2,
    "job": "j",
    "snap": 1,
    "slice": 0,
    "start": 0,
    "stop": 5,
    "epoch": 0,
    "seed": 0,
    "shuffle": "off",
    "block": 0,
    "cols": None,
}


@pytest.mark.parametrize(
    "change",
    [
        {"v": 1},
        {"v": 2.0},
        {"v": True},
        {"job": ""},
        {"job": 3},
        {"start": -1},
        {"start": 6},
        {"stop": "5"},
        {"slice": -1},
        {"slice": True},
        {"epoch": -1},
        {"seed": -5},
        {"shuffle": 1},
        {"shuffle": False},
        {"shuffle": "random"},
        {"shuffle": ["mix"]},
        {"shuffle": "mix"},
        {"block": 5},
        {"shuffle": "mix", "block": -1},
        {"block": True},
        {"cols": []},
        {"cols": [1]},
        {"cols": "a"},
        {"extra": 1},
    ],
)
def test_signed_but_invalid_payloads_are_refused(change):
    signer = TicketSigner(KEY)
    assert signer.verify(forge(VALID, KEY)).stop == 5
    payload = {**VALID, **change}
    with pytest.raises(AuthError):
        signer.verify(forge(payload, KEY))


def test_signed_non_object_payloads_are_refused():
    signer = TicketSigner(KEY)
    for payload in ([1, 2], "x", None, 3):
        with pytest.raises(AuthError):
            signer.verify(forge(payload, KEY))
    missing = dict(VALID)
    del missing["cols"]
    with pytest.raises(AuthError):
        signer.verify(forge(missing, KEY))


def test_a_ticket_without_a_session_claim_is_still_accepted():
    key = new_key()
    payload = {
        "v": 2,
        "job": "j",
        "snap": 42,
        "slice": 3,
        "start": 0,
        "stop": 10,
        "epoch": 1,
        "seed": 7,
        "shuffle": "slice",
        "block": 0,
        "cols": None,
    }
    assert TicketSigner(key).verify(forge(payload, key)) == good()
    with pytest.raises(AuthError, match="unexpected fields"):
        TicketSigner(key).verify(forge({**payload, "extra": 1}, key))
