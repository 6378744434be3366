"""CDRs and the queue/agent event log: mapping FreeSWITCH's hangup events and the engine's facts
into records, writing them to PostgreSQL without blocking calls or losing them (`RecordWriter`,
with a disk spool), retention, and the KPI reports computed from them."""
from engine.cdr.mapping import CallFacts, CdrRecord, cdr_from_event
from engine.cdr.queue_log import QueueEvent, QueueEventKind
from engine.cdr.writer import RecordWriter, WriterSettings, WriterStats

__all__ = ["CallFacts", "CdrRecord", "cdr_from_event", "QueueEvent", "QueueEventKind", "RecordWriter",
           "WriterSettings", "WriterStats"]
