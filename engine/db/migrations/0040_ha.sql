-- Active/standby (engine/ha): the leader holds a session advisory lock; this row says who won
-- it last, and `term` is the fencing token, one more at every takeover.
CREATE TABLE ha_leader (
    id          smallint PRIMARY KEY CHECK (id = 1),
    term        bigint NOT NULL,
    instance_id text,
    elected_at  timestamptz
);
INSERT INTO ha_leader (id, term) VALUES (1, 0);
