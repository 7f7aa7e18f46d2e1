"""Proof that a node-only coordinator action comes from a data node of this feeder session.

The bearer token only says "part of this deployment": every training job holds
it. The node-only actions (``register``, ``cached``, ``node_heartbeat``) hand out
the FileIO properties (possibly object-store credentials) and steer slice
assignment, so they also need proof of the session's ticket key, which the
coordinator gives only to its data nodes (inside the Spark task closure, never
over Flight). Wire form of the ``x-icefeed-node-proof`` header::

    v1.<unix_ms>.<nonce: 32 hex>.<base64url(hmac_sha256(node_key, message))>
    message  = "icefeed-node-call/v1\\n" action "\\n" unix_ms "\\n" nonce "\\n" hex(sha256(body))
    node_key = TicketSigner(ticket_key).derived_key("node-call")

The coordinator checks the MAC (constant time), that ``unix_ms`` is within
``window`` seconds of its own wall clock (node and driver clocks must agree,
e.g. NTP), and that the nonce was not used before: every proof is single-use,
for every node-only action (a replayed ``register`` would return the FileIO
properties again and steal a slot; a replayed ``node_heartbeat`` would keep a
dead node listed; a replayed ``cached`` would mark a slice cached on a node).
Nonces are remembered only while their timestamp is inside the window. Pure:
no sockets, an injectable clock.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable

from feeder.protocol.actions import NODE_ACTIONS
from jobs.errors import AuthError

__all__ = [
    "DEFAULT_WINDOW_SECONDS",
    "KEY_PURPOSE",
    "MAX_NONCES",
    "NODE_ACTIONS",
    "NodeCallSigner",
    "NodeCallVerifier",
]

KEY_PURPOSE = "node-call"
DEFAULT_WINDOW_SECONDS = 60.0
MAX_NONCES = 1_000_000  # only proofs with a valid MAC are remembered: real nodes' calls
_VERSION = "v1"
_MAX_PROOF_CHARS = 128
_PROOF = re.compile(r"^v1\.([0-9]{1,16})\.([0-9a-f]{32})\.([A-Za-z0-9_-]{43})$")


def _mac(key: bytes, action: str, unix_ms: int, nonce: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    message = "\n".join(("icefeed-node-call/" + _VERSION, action, str(unix_ms), nonce, digest))
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def _text(mac: bytes) -> str:
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, bytes) or len(key) < 16:
        raise ValueError("a node-call key must be at least 16 random bytes")
    return key


class NodeCallSigner:
    """A data node's side: a fresh single-use proof for each node-only call."""

    def __init__(self, key: bytes, *, clock: Callable[[], float] = time.time) -> None:
        self._key = _check_key(key)
        self._clock = clock

    def __repr__(self) -> str:
        return "NodeCallSigner(key=<hidden>)"

    def proof(self, action: str, body: bytes, *, nonce: str | None = None) -> str:
        """Return the ``x-icefeed-node-proof`` value for sending ``body`` to ``action`` now."""
        unix_ms = int(self._clock() * 1000)
        nonce = nonce if nonce is not None else secrets.token_hex(16)
        mac = _text(_mac(self._key, action, unix_ms, nonce, body))
        return f"{_VERSION}.{unix_ms}.{nonce}.{mac}"


class NodeCallVerifier:
    """The coordinator's side: accepts each valid proof once, inside the clock window.

    Thread-safe (Flight handlers run on many threads).
    """

    def __init__(
        self,
        key: bytes,
        *,
        window: float = DEFAULT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
        max_nonces: int = MAX_NONCES,
    ) -> None:
        if window <= 0 or max_nonces < 1:
            raise ValueError(f"window {window} and max_nonces {max_nonces} must be > 0")
        self._key = _check_key(key)
        self.window = window
        self._clock = clock
        self._max_nonces = max_nonces
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._expiry: list[tuple[float, str]] = []  # heap of (forget after, nonce)

    def __repr__(self) -> str:
        return f"NodeCallVerifier(key=<hidden>, window={self.window})"

    def remembered(self) -> int:
        """How many nonces are remembered right now (bounded by the window)."""
        with self._lock:
            self._forget(self._clock())
            return len(self._seen)

    def verify(self, action: str, body: bytes, proof: str | None) -> None:
        """Accept ``proof`` for ``action`` with ``body`` once, or raise AuthError saying why."""
        what = f"node-only action {action[:64]!r}"
        if proof is None:
            raise AuthError(
                f"{what}: no node proof (x-icefeed-node-proof header); only the "
                "feeder's own data nodes may call it"
            )
        match = _PROOF.match(proof) if len(proof) <= _MAX_PROOF_CHARS else None
        if match is None:
            raise AuthError(f"{what}: malformed node proof")
        unix_ms, nonce = int(match[1]), match[2]
        # compared as text: base64 leaves 2 spare bits, so two spellings decode alike
        expected = _text(_mac(self._key, action, unix_ms, nonce, body))
        if not hmac.compare_digest(match[3], expected):
            raise AuthError(f"{what}: bad node proof (not signed with this feeder session's key)")
        now = self._clock()
        skew = unix_ms / 1000 - now
        if abs(skew) > self.window:
            raise AuthError(
                f"{what}: node proof timestamp is {skew:+.0f}s off the coordinator's clock "
                f"(window ±{self.window:g}s); an old proof, or the clocks need syncing (NTP)"
            )
        with self._lock:
            self._forget(now)
            if nonce in self._seen:
                raise AuthError(f"{what}: node proof already used (replay)")
            if len(self._seen) >= self._max_nonces:
                raise AuthError(f"{what}: too many node calls within {self.window:g}s; retry")
            self._seen.add(nonce)
            heapq.heappush(self._expiry, (unix_ms / 1000 + self.window, nonce))

    def _forget(self, now: float) -> None:
        # a nonce whose timestamp left the window is refused by the clock check anyway
        while self._expiry and self._expiry[0][0] < now:
            _, nonce = heapq.heappop(self._expiry)
            self._seen.discard(nonce)
