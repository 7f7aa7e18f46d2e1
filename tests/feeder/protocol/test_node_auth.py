"""Node-call proofs: accepted once inside the clock window, every tampering refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feeder.protocol.node_auth import KEY_PURPOSE, NodeCallSigner, NodeCallVerifier
from feeder.protocol.tickets import TicketSigner, new_key
from jobs.errors import AuthError

KEY = new_key()
NOW = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pair(window: float = 60.0, **kwargs) -> tuple[NodeCallSigner, NodeCallVerifier, Clock]:
    clock = Clock()
    return (
        NodeCallSigner(KEY, clock=clock),
        NodeCallVerifier(KEY, window=window, clock=clock, **kwargs),
        clock,
    )


@given(st.sampled_from(["register", "cached", "node_heartbeat"]), st.binary(max_size=200))
def test_a_proof_is_accepted_once_then_refused_as_a_replay(action, body):
    signer, verifier, _ = pair()
    proof = signer.proof(action, body)
    verifier.verify(action, body, proof)
    with pytest.raises(AuthError, match=r"node-only action .*already used"):
        verifier.verify(action, body, proof)


@given(st.binary(max_size=100), st.data())
def test_any_change_to_action_body_or_proof_is_refused(body, data):
    signer, verifier, _ = pair()
    proof = signer.proof("register", body)
    which = data.draw(st.sampled_from(["action", "body", "proof"]))
    action, sent_body, sent_proof = "register", body, proof
    if which == "action":
        action = data.draw(st.sampled_from(["cached", "node_heartbeat", "registe", "status"]))
    elif which == "body":
        sent_body = data.draw(st.binary(max_size=100).filter(lambda b: b != body))
    else:
        at = data.draw(st.integers(0, len(proof) - 1))
        char = data.draw(
            st.sampled_from("0123456789abcdefABCXYZ_-.v").filter(lambda c: c != proof[at])
        )
        sent_proof = proof[:at] + char + proof[at + 1 :]
    with pytest.raises(AuthError, match="node-only action"):
        verifier.verify(action, sent_body, sent_proof)
    verifier.verify("register", body, proof)  # the refusal did not burn the real proof


@pytest.mark.parametrize(
    ("proof", "match"),
    [
        (None, "no node proof"),
        ("", "malformed"),
        ("v1.1.2.3", "malformed"),
        ("v2." + "1" * 13 + "." + "a" * 32 + "." + "A" * 43, "malformed"),
        ("x" * 10_000, "malformed"),
        ("v1.1800000000000." + "a" * 32 + "." + "A" * 43, "bad node proof"),
    ],
)
def test_missing_malformed_and_forged_proofs_are_refused(proof, match):
    _, verifier, _ = pair()
    with pytest.raises(AuthError, match=match):
        verifier.verify("register", b"{}", proof)


def test_a_proof_signed_with_another_sessions_key_is_refused():
    _, verifier, clock = pair()
    other = NodeCallSigner(new_key(), clock=clock)
    with pytest.raises(AuthError, match="bad node proof"):
        verifier.verify("cached", b"{}", other.proof("cached", b"{}"))


@pytest.mark.parametrize("offset", [-61.0, 61.0, -3600.0])
def test_proofs_outside_the_clock_window_are_refused(offset):
    signer, verifier, clock = pair(window=60.0)
    proof = signer.proof("node_heartbeat", b"{}")
    clock.now = NOW - offset  # the coordinator's clock is `offset` away from the node's
    with pytest.raises(AuthError, match="off the coordinator's clock"):
        verifier.verify("node_heartbeat", b"{}", proof)


def test_proofs_inside_the_window_pass_and_nonces_are_forgotten_after_it():
    signer, verifier, clock = pair(window=60.0)
    proofs = [signer.proof("node_heartbeat", b"{}") for _ in range(50)]
    clock.now = NOW + 59.0
    for proof in proofs:
        verifier.verify("node_heartbeat", b"{}", proof)
    assert verifier.remembered() == 50
    clock.now = NOW + 61.0  # their timestamps left the window: a replay fails on the clock
    assert verifier.remembered() == 0
    with pytest.raises(AuthError, match="off the coordinator's clock"):
        verifier.verify("node_heartbeat", b"{}", proofs[0])


def test_the_nonce_memory_is_bounded():
    signer, verifier, _ = pair(max_nonces=3)
    for _ in range(3):
        verifier.verify("cached", b"{}", signer.proof("cached", b"{}"))
    with pytest.raises(AuthError, match="too many node calls"):
        verifier.verify("cached", b"{}", signer.proof("cached", b"{}"))


def test_the_node_key_is_derived_from_the_ticket_key_and_kept_apart():
    ticket_key = new_key()
    node_key = TicketSigner(ticket_key).derived_key(KEY_PURPOSE)
    assert node_key == TicketSigner(ticket_key).derived_key(KEY_PURPOSE)  # node and coordinator
    assert node_key not in (ticket_key, TicketSigner(ticket_key).derived_key("other"))
    assert node_key != TicketSigner(new_key()).derived_key(KEY_PURPOSE)
    signer, verifier = NodeCallSigner(node_key), NodeCallVerifier(node_key)
    verifier.verify("register", b"{}", signer.proof("register", b"{}"))
    with pytest.raises(AuthError, match="bad node proof"):  # the raw ticket key is no node key
        verifier.verify("register", b"{}", NodeCallSigner(ticket_key).proof("register", b"{}"))


def test_keys_stay_out_of_repr_and_bad_settings_fail_early():
    assert KEY.hex() not in repr(NodeCallSigner(KEY)) + repr(NodeCallVerifier(KEY))
    with pytest.raises(ValueError, match="16 random bytes"):
        NodeCallSigner(b"short")
    with pytest.raises(ValueError, match="must be > 0"):
        NodeCallVerifier(KEY, window=0)
