"""The coordinator's action table is defined once: node_auth and the messages agree with it."""

from __future__ import annotations

from feeder.protocol import node_auth
from feeder.protocol.actions import ACTIONS, CONSUMER_ACTIONS, NODE_ACTIONS, Audience
from feeder.protocol.node_messages import CachedReport, NodeHeartbeat, RegisterRequest


def test_every_action_has_one_audience_and_a_description():
    assert set(ACTIONS) == CONSUMER_ACTIONS | NODE_ACTIONS
    assert not CONSUMER_ACTIONS & NODE_ACTIONS
    assert all(spec.name == name and spec.description for name, spec in ACTIONS.items())
    assert {"register", "cached", "node_heartbeat"} == NODE_ACTIONS
    assert {"status", "lease", "heartbeat", "done", "resume", "refresh"} == CONSUMER_ACTIONS


def test_node_auth_guards_exactly_the_node_actions_of_the_table():
    assert node_auth.NODE_ACTIONS is NODE_ACTIONS


def test_each_node_request_names_a_node_action():
    requests = (RegisterRequest, CachedReport, NodeHeartbeat)
    assert {r.ACTION for r in requests} == NODE_ACTIONS
    assert all(ACTIONS[r.ACTION].audience is Audience.NODE for r in requests)
