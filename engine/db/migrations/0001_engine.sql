-- The engine's own bookkeeping. Capability tables (cdr, queue_log, agents, campaigns) come in
-- their own migrations.
CREATE TABLE engine_instance (
    id          text PRIMARY KEY,
    hostname    text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at  timestamptz
);
