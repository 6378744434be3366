-- The outbound dialer (engine/dialer): campaigns, contacts (leads), every attempt (the records a
-- regulator asks for), do-not-call lists and callbacks scheduled by agents.
CREATE TABLE campaign (
    name          text PRIMARY KEY,
    mode          text NOT NULL CHECK (mode IN ('preview', 'progressive', 'predictive', 'broadcast', 'survey')),
    settings      jsonb NOT NULL,           -- caller id, gateway, queue/flow, retry rules, window, abandon rule...
    state         text NOT NULL DEFAULT 'draft'
                  CHECK (state IN ('draft', 'running', 'paused', 'stopped', 'done')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,              -- abandon periods count from here
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE contact (
    id              bigserial PRIMARY KEY,
    campaign        text NOT NULL REFERENCES campaign (name) ON DELETE CASCADE,
    phone           text NOT NULL,          -- E.164
    timezones       text[] NOT NULL,        -- IANA zones: the explicit field, else the number's
    fields          jsonb NOT NULL DEFAULT '{}',
    state           text NOT NULL DEFAULT 'new'
                    CHECK (state IN ('new', 'retry', 'dialing', 'done', 'dnc', 'invalid')),
    attempts        integer NOT NULL DEFAULT 0,
    retries         jsonb NOT NULL DEFAULT '{}',
    next_attempt_at timestamptz,
    priority        integer NOT NULL DEFAULT 0,
    imported_at     timestamptz NOT NULL DEFAULT now(),
    source_line     integer,                -- line of the CSV it came from
    UNIQUE (campaign, phone)
);
CREATE INDEX contact_due ON contact (campaign, state, next_attempt_at);

CREATE TABLE dial_attempt (
    uuid            text PRIMARY KEY,       -- origination_uuid of the outbound leg
    campaign        text NOT NULL REFERENCES campaign (name) ON DELETE CASCADE,
    contact_id      bigint NOT NULL REFERENCES contact (id) ON DELETE CASCADE,
    phone           text NOT NULL,
    started_at      timestamptz NOT NULL,
    answered_at     timestamptz,
    connected_at    timestamptz,
    ended_at        timestamptz,
    disposition     text NOT NULL DEFAULT '',
    amd_result      text NOT NULL DEFAULT '',
    abandoned       boolean NOT NULL DEFAULT false,
    message_played  text NOT NULL DEFAULT '',
    agent           text NOT NULL DEFAULT ''
);
CREATE INDEX dial_attempt_by_campaign ON dial_attempt (campaign, started_at);
CREATE INDEX dial_attempt_by_contact ON dial_attempt (contact_id, started_at);

CREATE TABLE dnc_number (
    phone       text NOT NULL,              -- E.164
    list        text NOT NULL,              -- 'national', 'internal', or 'campaign:<name>'
    added_at    timestamptz NOT NULL DEFAULT now(),
    source      text NOT NULL DEFAULT '',   -- registry file, 'opt-out' with the call uuid, operator
    PRIMARY KEY (phone, list)
);

CREATE TABLE dialer_callback (
    id          bigserial PRIMARY KEY,
    campaign    text NOT NULL REFERENCES campaign (name) ON DELETE CASCADE,
    contact_id  bigint NOT NULL REFERENCES contact (id) ON DELETE CASCADE,
    due_at      timestamptz NOT NULL,
    agent       text NOT NULL DEFAULT '',   -- '' = any agent
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'cancelled')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dialer_callback_due ON dialer_callback (campaign, due_at) WHERE status = 'pending';
