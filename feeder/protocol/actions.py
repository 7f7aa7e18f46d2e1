"""The coordinator's Flight actions, defined once: name → who may call it and what it does.

Consumers (any caller holding the token) call the consumer actions; only the
feeder's own data nodes call the node actions, each with a proof of the session
key (:mod:`feeder.protocol.node_auth`). The coordinator dispatches on this table
and lists it in ``list_actions``; node_auth derives its set of node-only actions
from it. Wire forms: PROTOCOL.md, *Coordinator actions*.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


class Audience(enum.Enum):
    """Who calls an action: a consumer (token only) or a data node (token and node proof)."""

    CONSUMER = "consumer"
    NODE = "node"


@dataclass(frozen=True)
class ActionSpec:
    """One coordinator action: its wire name, its audience and a one-line description."""

    name: str
    audience: Audience
    description: str


def _table(*specs: ActionSpec) -> Mapping[str, ActionSpec]:
    return MappingProxyType({spec.name: spec for spec in specs})


ACTIONS: Mapping[str, ActionSpec] = _table(
    ActionSpec("status", Audience.CONSUMER, "status document (JSON)"),
    ActionSpec("lease", Audience.CONSUMER, "dynamic mode: lease the next unit of a job's epoch"),
    ActionSpec(
        "heartbeat",
        Audience.CONSUMER,
        "dynamic mode: extend a consumer's leases, report rows delivered",
    ),
    ActionSpec("done", Audience.CONSUMER, "dynamic mode: acknowledge a leased unit"),
    ActionSpec(
        "resume",
        Audience.CONSUMER,
        "failover: re-sign the rest of a ticket, with the current live locations",
    ),
    ActionSpec(
        "refresh",
        Audience.CONSUMER,
        "follow the table: serve its current snapshot to each job's next epoch",
    ),
    ActionSpec(
        "register", Audience.NODE, "data nodes: join the feeder, get the plan and assigned slices"
    ),
    ActionSpec(
        "cached", Audience.NODE, "data nodes: report a cached slice and its exact row count"
    ),
    ActionSpec(
        "node_heartbeat", Audience.NODE, "data nodes: report stats, get new assignments or stop"
    ),
)


def actions_for(audience: Audience) -> frozenset[str]:
    """Return the names of the actions ``audience`` calls."""
    return frozenset(name for name, spec in ACTIONS.items() if spec.audience is audience)


NODE_ACTIONS = actions_for(Audience.NODE)
CONSUMER_ACTIONS = actions_for(Audience.CONSUMER)
