-- The ACD's agent status as the agent or a supervisor last set it (engine/acd/persistence.py):
-- read at start so a restart keeps who is logged in, on break and why.
CREATE TABLE acd_agent_status (
    agent       text PRIMARY KEY,            -- the agent id of acd.yaml
    status      text NOT NULL
                CHECK (status IN ('Logged Out', 'Available', 'Available (On Demand)', 'On Break')),
    reason      text NOT NULL DEFAULT '',    -- the break reason code (lunch, no-answer, ...)
    state       text NOT NULL,               -- the state when the status changed: for a supervisor, not restored
    changed_at  timestamptz NOT NULL         -- orders the writes: an older one never overwrites a newer
);
