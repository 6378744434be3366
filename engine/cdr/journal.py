"""The engine's side of the records: a call tells the journal what happened in its queue as it
happens, and hands over its legs when it ends; the journal turns that into QueueEvents and
CdrRecords for the RecordWriter (which never blocks the call).

`call_facts` is pure: what the engine knows about a leg that FreeSWITCH does not (queue, agent,
wait, ring; for a dialer's call its campaign, contact and the attempt's disposition), from the
call's labels and the times it marked.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Protocol

from engine.cdr.mapping import CallFacts, cdr_from_event
from engine.channelvars import VAR_CAMPAIGN, VAR_CONTACT
from engine.cdr.queue_log import QueueEvent, QueueEventKind

log = logging.getLogger(__name__)


class Sink(Protocol):
    def submit(self, record: Any) -> None: ...


def call_facts(call: Any, leg: Any) -> CallFacts:
    """The engine's facts for one leg of a finished call (see CallFacts)."""
    marks = call.marks
    wait = None
    if "queued" in marks:
        left_queue = marks.get("connected", marks.get("left_queue", marks.get("ended")))
        wait = round(left_queue - marks["queued"], 3) if left_queue is not None else None
    return CallFacts(
        node=leg.node,
        role=leg.role,
        call_uuid=call.uuid,  # so an agent leg lost with its node still names its call
        flow=call.labels.get("flow"),
        ivr_node=call.labels.get("ivr_node"),
        queue=call.labels.get("queue"),
        agent=call.labels.get("agent") if leg.role == "caller" else leg.variables.get("callrouter_agent"),
        wait_seconds=wait if leg.role == "caller" else None,
        ring_seconds=round(marks["ringing"], 3) if "ringing" in marks and leg.role == "caller" else None,
        # Every leg of a dialer's call belongs to its attempt (labels); a dialled leg the dialer
        # never took up (no open attempt) still names them in its channel variables.
        campaign=call.labels.get("campaign") or leg.variables.get(VAR_CAMPAIGN) or None,
        contact=call.labels.get("contact") or leg.variables.get(VAR_CONTACT) or None,
        disposition=call.labels.get("disposition"),
        # The caller's leg carries what happened to the call: where it was sent, what was recorded.
        transfer_target=call.labels.get("transfer_target") if leg.role == "caller" else None,
        recording_path=call.labels.get("recording_path") if leg.role == "caller" else None,
    )


class _Unfinished:
    """The headers of a leg whose CHANNEL_HANGUP_COMPLETE never came (node lost): still one CDR."""

    def __init__(self, leg: Any) -> None:
        self._headers = {"Unique-ID": leg.uuid, "Hangup-Cause": leg.hangup_cause or "LOST_DURING_OUTAGE",
                         "Caller-Caller-ID-Number": leg.caller_id_number,
                         "Caller-Caller-ID-Name": leg.caller_id_name,
                         "Caller-Destination-Number": leg.destination_number}

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._headers.get(name) or default


class CallJournal:
    def __init__(self, sink: Sink | None) -> None:
        self.sink = sink  # None: records are not kept (tests and tools without a database)

    def queue_event(self, call: Any, kind: QueueEventKind, **fields: Any) -> None:
        if self.sink is None:
            return
        seq = call.next_journal_seq()
        caller = call.caller
        self.sink.submit(QueueEvent(
            event_id=QueueEvent.key_for(call.uuid, kind, seq), time=datetime.now(timezone.utc), event=kind.value,
            queue=call.labels.get("queue", ""), call_uuid=call.uuid, agent=fields.pop("agent", "") or "",
            caller_id_number=caller.caller_id_number, caller_id_name=caller.caller_id_name, node=caller.node,
            **fields))

    def call_released(self, call: Any) -> None:
        """A call handed over still up: the CDRs of its legs already over (an agent who hung up
        while the caller went on), which the engine adopting the call never sees."""
        if self.sink is None:
            return
        for leg in call.legs.values():
            if leg.role != "caller" and leg.final_event is not None:
                self._submit(call, leg)

    def call_finished(self, call: Any) -> None:
        """One CDR per leg the call controlled."""
        if self.sink is None:
            return
        for leg in call.legs.values():
            if leg.final_event is None and not leg.answered and leg.role != "caller":
                continue  # an originate refused before the channel existed (e.g. USER_NOT_REGISTERED)
            self._submit(call, leg)

    def _submit(self, call: Any, leg: Any) -> None:
        try:
            self.sink.submit(cdr_from_event(leg.final_event or _Unfinished(leg), call_facts(call, leg)))
        except ValueError as exc:
            log.error("call %s: no CDR for leg %s: %s", call.uuid, leg.uuid, exc)
