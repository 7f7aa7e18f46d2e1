"""Signed, opaque Flight tickets: which rows of which slice, for whom, in which order.

Wire form: ``base64url(payload) "." base64url(hmac_sha256(key, payload))``
(no padding), the payload a compact JSON object::

    {"v":2,"job":..,"snap":..,"slice":..,"start":..,"stop":..,
     "epoch":..,"seed":..,"shuffle":"off"|"slice"|"mix","block":..,"cols":null|[..],
     "sess":..}

``shuffle`` says which stream of the slice ``[start, stop)`` indexes: table order,
the slice's row permutation, or (``"mix"``) its block stream of ``block`` rows a
block (:mod:`feeder.protocol.mix`; ``block`` is 0 otherwise).

The key is random per feeder session and shared only between the coordinator
and its data nodes. A ticket never carries a path: a data node looks the slice
up in the plan the coordinator gave it. ``sess`` is the session id (derived
from the key, public): a ticket of an earlier session fails its signature
check, and its ``sess`` lets the refusal say that the feeder was restarted
(RestartedError) instead of "bad signature". Tickets without ``sess`` are
still accepted.

A *bundle* asks one ``do_get`` for several ranges: signed tickets joined by
``","`` (a character no ticket holds), at most :data:`MAX_BUNDLE_TICKETS`; the node
checks every ticket and streams the ranges one after another, in order.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from feeder.protocol.shuffle_kind import Shuffle
from jobs.errors import AuthError, RestartedError

VERSION = 2
MAX_TICKET_BYTES = 64 * 1024
#: the most tickets one bundle may join (and what a client puts in one)
MAX_BUNDLE_TICKETS = 256
BUNDLE_SEPARATOR = b","
_KEYS = frozenset(
    {"v", "job", "snap", "slice", "start", "stop", "epoch", "seed", "shuffle", "block", "cols"}
)
_SHUFFLES = frozenset(k.value for k in Shuffle)
_SESSION = "sess"
_SESSION_ID = re.compile(r"[0-9a-f]{16}")
_B64URL = re.compile(rb"^[A-Za-z0-9_-]*$")
_INT64 = 2**63
#: cached payload heads per signer (one per job, epoch and order; cleared when full)
_MAX_HEADS = 1024
#: the ticket snapshot id of a table without snapshots
NO_SNAPSHOT = -1


def snapshot_key(snapshot_id: int | None) -> int:
    """The snapshot id tickets carry for ``snapshot_id`` (``NO_SNAPSHOT`` for None)."""
    return NO_SNAPSHOT if snapshot_id is None else snapshot_id


@dataclass(frozen=True, kw_only=True)
class TicketClaims:
    """What a ticket grants: rows ``[start, stop)`` of ``slice_id``'s epoch order to ``job``."""

    job: str
    snapshot_id: int
    slice_id: int
    start: int
    stop: int
    epoch: int
    seed: int
    shuffle: Shuffle
    columns: tuple[str, ...] | None = None
    block_rows: int = 0

    def __post_init__(self) -> None:
        # a boolean means what it meant in protocol 1: rows permuted inside the slice
        if isinstance(self.shuffle, bool):
            object.__setattr__(self, "shuffle", Shuffle.SLICE if self.shuffle else Shuffle.OFF)
        if (self.shuffle is Shuffle.MIX) != (self.block_rows > 0):
            raise ValueError("block_rows must be > 0 exactly for a mix ticket")


def new_key() -> bytes:
    """Return a fresh random 32-byte signing key (one per feeder session)."""
    return secrets.token_bytes(32)


def _b64encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _b64decode(data: bytes) -> bytes:
    if not _B64URL.match(data):
        raise AuthError("invalid ticket: not base64url")
    try:
        return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError) as exc:
        raise AuthError("invalid ticket: not base64url") from exc


def _int(payload: dict[str, Any], key: str, lo: int, hi: int = _INT64) -> int:
    value = payload[key]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value < hi:
        raise AuthError(f"invalid ticket: field {key!r} is not an integer in [{lo}, {hi})")
    return value


class TicketSigner:
    """Signs and verifies tickets with one HMAC-SHA256 key."""

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) < 16:
            raise ValueError("a ticket key must be at least 16 random bytes (see new_key())")
        self._key = key
        self.session_id = self.derived_key("session-id").hex()[:16]
        self._heads: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}

    def __repr__(self) -> str:
        return "TicketSigner(key=<hidden>)"

    def derived_key(self, purpose: str) -> bytes:
        """Return a key for ``purpose`` derived from this session key (HMAC-SHA256 of it).

        Coordinator and nodes derive the same key; it reveals nothing of the ticket
        key, and no ticket payload (a JSON object) can collide with the label.
        """
        label = b"icefeed-derived-key/" + purpose.encode("utf-8")
        return hmac.new(self._key, label, hashlib.sha256).digest()

    def sign(self, claims: TicketClaims) -> bytes:
        """Return the wire form of ``claims``.

        The payload is the compact, key-sorted JSON of the claims; everything but
        ``slice``, ``start`` and ``stop`` is the same for all of an epoch's tickets of a
        job, so that part's JSON is made once (a plan or lease signs dozens of tickets).
        """
        return self.sign_range(claims, claims.slice_id, claims.start, claims.stop)

    def sign_range(self, template: TicketClaims, slice_id: int, start: int, stop: int) -> bytes:
        """Return the wire form of ``template`` with its range replaced by ``slice_id``'s
        rows ``[start, stop)`` (what :meth:`sign` of those claims returns, without making
        a claims object per range: a plan or lease signs dozens)."""
        head, snap = self._head(template)
        raw = b'%s%d,"snap":%s,"start":%d,"stop":%d,"v":%d}' % (
            head,
            slice_id,
            snap,
            start,
            stop,
            VERSION,
        )
        mac = hmac.digest(self._key, raw, "sha256")
        return _b64encode(raw) + b"." + _b64encode(mac)

    def _head(self, claims: TicketClaims) -> tuple[bytes, bytes]:
        """The payload's JSON before the slice id (keys ``block`` to ``shuffle``, sorted),
        and the snapshot id's JSON, for ``claims``' job, epoch and order (cached)."""
        key = (
            claims.job,
            claims.columns,
            claims.shuffle,
            claims.block_rows,
            claims.epoch,
            claims.seed,
            claims.snapshot_id,
        )
        found = self._heads.get(key)
        if found is None:
            fields = {
                "block": claims.block_rows,
                "cols": list(claims.columns) if claims.columns is not None else None,
                "epoch": claims.epoch,
                "job": claims.job,
                "seed": claims.seed,
                _SESSION: self.session_id,
                "shuffle": claims.shuffle.value,
            }
            head = json.dumps(fields, separators=(",", ":"), sort_keys=True)
            found = (head[:-1] + ',"slice":').encode(), json.dumps(claims.snapshot_id).encode()
            if len(self._heads) >= _MAX_HEADS:
                self._heads.clear()
            self._heads[key] = found
        return found

    def verify(self, raw: bytes) -> TicketClaims:
        """Return the claims of a ticket signed with this key.

        Raises AuthError for anything else: not bytes, too long, bad base64,
        bad signature, truncated, bad JSON, wrong version, unknown or missing
        fields, wrong types, negative or inverted ranges.
        """
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise AuthError("invalid ticket: not bytes")
        raw = bytes(raw)
        if len(raw) > MAX_TICKET_BYTES:
            raise AuthError("invalid ticket: too long")
        parts = raw.split(b".")
        if len(parts) != 2:
            raise AuthError("invalid ticket: expected 'payload.signature'")
        payload_raw, mac = _b64decode(parts[0]), _b64decode(parts[1])
        expected = hmac.digest(self._key, payload_raw, "sha256")
        if not hmac.compare_digest(mac, expected):
            check_session(_unverified_session(payload_raw), self.session_id, "ticket")
            raise AuthError("invalid ticket: bad signature (not issued by this feeder session)")
        try:
            payload = json.loads(payload_raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise AuthError("invalid ticket: payload is not JSON") from exc
        return _claims(payload)


def check_session(sent: object, current: str, what: str) -> None:
    """Raise RestartedError if ``sent`` is another session id than ``current``.

    Args:
        sent: the session id a caller sent back (anything else is ignored).
        current: this feeder session's id.
        what: what carried it, for the message ("ticket", "lease").

    Raises:
        RestartedError: ``sent`` is a session id, not this one.
    """
    if isinstance(sent, str) and _SESSION_ID.fullmatch(sent) and sent != current:
        raise RestartedError(
            f"this {what} is from feeder session {sent}, but the feeder now runs session "
            f"{current}: the feeder was restarted (or this is another feeder), and the "
            "tickets and leases of the old session are gone; start the epoch again"
        )


def _unverified_session(payload_raw: bytes) -> object:
    """The ``sess`` of a payload whose signature failed (only to word the refusal)."""
    try:
        payload = json.loads(payload_raw)
    except (UnicodeDecodeError, ValueError):
        return None
    return payload.get(_SESSION) if isinstance(payload, dict) else None


def _claims(payload: Any) -> TicketClaims:
    if not isinstance(payload, dict) or set(payload) - {_SESSION} != _KEYS:
        raise AuthError("invalid ticket: unexpected fields")
    version = payload["v"]
    if isinstance(version, bool) or not isinstance(version, int) or version != VERSION:
        raise AuthError(f"invalid ticket: version {payload['v']!r} is not {VERSION}")
    job = payload["job"]
    if not isinstance(job, str) or not job:
        raise AuthError("invalid ticket: job must be a non-empty string")
    if not isinstance(payload["shuffle"], str) or payload["shuffle"] not in _SHUFFLES:
        raise AuthError("invalid ticket: shuffle must be one of 'off', 'slice', 'mix'")
    shuffle = Shuffle(payload["shuffle"])
    block = _int(payload, "block", 0, 2**31)
    if (shuffle is Shuffle.MIX) != (block > 0):
        raise AuthError("invalid ticket: block must be > 0 exactly for a mix ticket")
    cols = payload["cols"]
    if cols is not None and (
        not isinstance(cols, list) or not cols or not all(isinstance(c, str) and c for c in cols)
    ):
        raise AuthError("invalid ticket: cols must be null or a non-empty list of names")
    start = _int(payload, "start", 0)
    stop = _int(payload, "stop", 0)
    if stop < start:
        raise AuthError("invalid ticket: stop < start")
    return TicketClaims(
        job=job,
        snapshot_id=_int(payload, "snap", -_INT64),
        slice_id=_int(payload, "slice", 0, 2**32 - 2),
        start=start,
        stop=stop,
        epoch=_int(payload, "epoch", 0, 2**32 - 1),
        seed=_int(payload, "seed", 0, 2**64),
        shuffle=shuffle,
        columns=tuple(cols) if cols is not None else None,
        block_rows=block,
    )


def claims_dict(claims: TicketClaims) -> dict[str, Any]:
    """Return ``claims`` as a plain dict (for logs and status; holds no secret)."""
    out = asdict(claims)
    out["shuffle"] = claims.shuffle.value
    return out


def join_bundle(tickets: Sequence[str]) -> str:
    """Return the ``do_get`` ticket that asks for the ranges of ``tickets``, in order.

    Raises ValueError for no tickets or more than :data:`MAX_BUNDLE_TICKETS`.
    """
    if not 1 <= len(tickets) <= MAX_BUNDLE_TICKETS:
        raise ValueError(f"a bundle joins 1 to {MAX_BUNDLE_TICKETS} tickets, not {len(tickets)}")
    return BUNDLE_SEPARATOR.decode().join(tickets)


def split_bundle(raw: bytes) -> list[bytes]:
    """Return the tickets a ``do_get`` ticket joins (one for a plain ticket).

    Raises AuthError for more than :data:`MAX_BUNDLE_TICKETS` tickets or an empty one.
    """
    raw = bytes(raw)
    if len(raw) > MAX_TICKET_BYTES * MAX_BUNDLE_TICKETS:
        raise AuthError("invalid ticket: too long")
    parts = raw.split(BUNDLE_SEPARATOR)
    if len(parts) > MAX_BUNDLE_TICKETS:
        raise AuthError(f"invalid ticket: a bundle joins at most {MAX_BUNDLE_TICKETS} tickets")
    if len(parts) > 1 and not all(parts):
        raise AuthError("invalid ticket: a bundle holds an empty ticket")
    return parts
