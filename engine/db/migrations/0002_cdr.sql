-- CDRs (one row per FreeSWITCH leg, columns after mod_cdr_pg_csv plus the engine's own) and the
-- queue/agent event log. Both are written by engine/cdr's RecordWriter with COPY into a temp
-- table then INSERT ... ON CONFLICT DO NOTHING on the natural key, so replays are idempotent.
CREATE TABLE cdr (
    uuid                    text PRIMARY KEY,          -- FreeSWITCH Unique-ID of the leg
    bleg_uuid               text,
    direction               text,
    caller_id_name          text,
    caller_id_number        text,
    destination_number      text,
    start_stamp             timestamptz,
    answer_stamp            timestamptz,
    end_stamp               timestamptz,
    duration                integer,                   -- seconds, as FreeSWITCH counts them
    billsec                 integer,
    hangup_cause            text,
    sip_hangup_disposition  text,
    node                    text,
    role                    text,                      -- caller | agent | outbound
    flow                    text,
    ivr_node                text,                      -- last IVR node reached
    queue                   text,
    agent                   text,
    wait_seconds            double precision,
    ring_seconds            double precision,
    talk_seconds            double precision,
    hold_seconds            double precision,
    wrap_up_seconds         double precision,
    transfer_target         text,
    campaign                text,
    contact                 text,
    disposition             text,
    recording_path          text,
    rtp_audio_in_mos                 double precision,
    rtp_audio_in_quality_percentage  double precision,
    rtp_audio_in_packet_count        bigint,
    rtp_audio_in_skip_packet_count   bigint,
    rtp_audio_in_flaw_total          bigint,
    packet_loss_percent              double precision,  -- flaws / (received + flaws)
    rtp_audio_in_jitter_min_variance double precision,
    rtp_audio_in_jitter_max_variance double precision
);
CREATE INDEX cdr_start_stamp ON cdr (start_stamp);
CREATE INDEX cdr_end_stamp ON cdr (end_stamp);

CREATE TABLE queue_log (
    event_id          text PRIMARY KEY,
    time              timestamptz NOT NULL,
    event             text NOT NULL CHECK (event IN ('ENTER', 'RING_AGENT', 'RING_NO_ANSWER', 'CONNECT', 'ABANDON',
                                                     'TIMEOUT', 'OVERFLOW', 'TRANSFER', 'COMPLETE_CALLER',
                                                     'COMPLETE_AGENT', 'WRAP_UP', 'LOGIN', 'LOGOUT', 'STATUS')),
    queue             text NOT NULL DEFAULT '',
    call_uuid         text NOT NULL DEFAULT '',
    agent             text NOT NULL DEFAULT '',
    campaign          text NOT NULL DEFAULT '',
    caller_id_number  text NOT NULL DEFAULT '',
    caller_id_name    text NOT NULL DEFAULT '',
    position          integer,
    wait_seconds      double precision,
    ring_seconds      double precision,
    talk_seconds      double precision,
    hold_seconds      double precision,
    wrap_up_seconds   double precision,
    status            text NOT NULL DEFAULT '',
    reason            text NOT NULL DEFAULT '',
    target            text NOT NULL DEFAULT '',
    node              text NOT NULL DEFAULT ''
);
CREATE INDEX queue_log_time ON queue_log (time);
CREATE INDEX queue_log_call ON queue_log (call_uuid) WHERE call_uuid <> '';
-- agent state segments (occupancy, utilisation)
CREATE INDEX queue_log_agent_state ON queue_log (agent, time) WHERE event IN ('LOGIN', 'LOGOUT', 'STATUS');
-- repeat callers (first-contact resolution)
CREATE INDEX queue_log_caller_enter ON queue_log (caller_id_number, time) WHERE event = 'ENTER';
