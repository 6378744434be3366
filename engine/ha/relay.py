"""The far side of a cross-node call: CDRs for the legs a node runs for a caller on another node.

A caller parked on node A reaches an agent registered on node B through the inter-node gateway;
the engine's originate on A carries the caller's Unique-ID as the SIP header X-Callrouter-Parent.
Node B's dialplan bridges its inbound leg to the agent's phone, and sofia keeps the header on
both of B's legs (`sip_h_X-Callrouter-Parent`). No call of the engine owns those legs (it
controls the call on A), so the registry passes their events by; their CDRs come from here, with
role `relay`, B's node name and the caller's Unique-ID as call_uuid.
"""
from __future__ import annotations

from typing import Any, Protocol

from engine.cdr.mapping import CallFacts, cdr_from_event
from engine.channelvars import VAR_ENTRY, VAR_PARENT, VAR_PARENT_HEADER


class Journal(Protocol):
    sink: Any  # where records go (RecordWriter.submit); None while records are not kept


class RelayLegs:
    """`observe(event)` with every event of every node (it runs in the ESL reader: no I/O)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def observe(self, event: Any) -> None:
        if event.name != "CHANNEL_HANGUP_COMPLETE" or self.journal.sink is None:
            return
        if not event.get("variable_" + VAR_PARENT_HEADER):
            return  # not a relay leg
        if event.get("variable_" + VAR_PARENT) or event.get("variable_" + VAR_ENTRY):
            # A leg the engine originated, or a caller parked for it (who may have sent the header
            # from outside): its call writes that CDR.
            return
        self.journal.sink.submit(cdr_from_event(event, CallFacts(node=event.node, role="relay")))
