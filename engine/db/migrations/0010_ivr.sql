-- The IVR's own tables (engine/ivr): survey answers per call, callback requests the dialer/ACD
-- honours, voicemail/message recordings' metadata, and caller profiles that flows look up.
CREATE TABLE survey_answer (
    call_uuid    text NOT NULL,             -- Unique-ID of the caller's leg (joins cdr.uuid)
    survey       text NOT NULL,             -- the survey node's `survey` name
    question     text NOT NULL,             -- the question's id
    answer       text NOT NULL,             -- the key pressed
    flow         text NOT NULL,
    caller_id    text,
    answered_at  timestamptz NOT NULL,
    PRIMARY KEY (call_uuid, survey, question)
);
CREATE INDEX survey_answer_by_time ON survey_answer (survey, answered_at);

CREATE TABLE callback_request (
    id            bigserial PRIMARY KEY,
    call_uuid     text NOT NULL,
    queue         text NOT NULL,
    number        text NOT NULL,            -- where to call back (the caller id)
    flow          text NOT NULL,
    joined_at     timestamptz NOT NULL,     -- when the caller first reached the engine: keeps the place
    requested_at  timestamptz NOT NULL,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'dialing', 'done', 'failed', 'cancelled')),
    attempts      integer NOT NULL DEFAULT 0,
    done_at       timestamptz,
    UNIQUE (call_uuid, queue)
);
CREATE INDEX callback_request_pending ON callback_request (queue, joined_at) WHERE status = 'pending';

CREATE TABLE ivr_recording (
    path         text PRIMARY KEY,          -- where FreeSWITCH wrote the file
    call_uuid    text NOT NULL,
    mailbox      text NOT NULL,
    seconds      double precision NOT NULL,
    flow         text NOT NULL,
    caller_id    text,
    recorded_at  timestamptz NOT NULL,
    heard_at     timestamptz                -- set by whoever listens to it
);
CREATE INDEX ivr_recording_by_mailbox ON ivr_recording (mailbox, recorded_at);

CREATE TABLE ivr_caller_profile (
    phone       text PRIMARY KEY,           -- caller id as FreeSWITCH presents it (+E.164)
    name        text,
    tier        text,                       -- e.g. gold, platinum: flows branch on it
    language    text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
