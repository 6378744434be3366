-- Which legs are one call: every CDR row carries the Unique-ID of the call's first leg (the
-- caller's; its own on that leg), also for the legs on other nodes reached through the
-- inter-node gateway. NULL on rows written before this column, and on legs nobody marked.
ALTER TABLE cdr ADD COLUMN call_uuid text;
CREATE INDEX cdr_call_uuid ON cdr (call_uuid);
