-- Evidence and control through the terminal (issue #24, docs/jt808.md, docs/sql.md):
-- photos, alarm words of reports without a position, commands to terminals and their fate,
-- and the seals of evidence bundles.

-- One row per media item a terminal uploaded (a JT/T 808 0x0801, or an MQTT terminal's
-- …/media message). The bytes live in the blob store under their SHA-256 (store/media.py);
-- a redelivered upload is the same (device, terminal id, hash) and is kept once.
CREATE TABLE IF NOT EXISTS media (
    id            bigserial PRIMARY KEY,
    device_id     text        NOT NULL,
    terminal_id   bigint      NOT NULL,   -- the terminal's multimedia id (DWORD)
    sha256        text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    bytes         integer     NOT NULL CHECK (bytes >= 0),
    media_type    text        NOT NULL,   -- image, audio, video
    media_format  text        NOT NULL,   -- jpeg, …
    event         smallint    NOT NULL,   -- why it was taken (0 platform command, 1 timed …)
    channel       smallint    NOT NULL,   -- the camera
    taken_at      timestamptz NOT NULL,
    lon           double precision,
    lat           double precision,
    storage       text        NOT NULL,   -- 'local' or 's3': where the bytes are
    command_id    text,                   -- the capture command that asked for it
    violation_id  text,                   -- the violation it was taken for, or falls in
    received_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_id, terminal_id, sha256)
);
CREATE INDEX IF NOT EXISTS media_device_taken ON media (device_id, taken_at);
CREATE INDEX IF NOT EXISTS media_violation ON media (violation_id) WHERE violation_id IS NOT NULL;

-- The alarm word of a location report that had no position (a fix needs one): a GNSS
-- fault or a cut antenna is still on record (docs/protocol.md, …/alarm).
CREATE TABLE IF NOT EXISTS terminal_alarms (
    device_id    text        NOT NULL,
    ts           timestamptz NOT NULL,
    alarm        bigint      NOT NULL CHECK (alarm BETWEEN 0 AND 4294967295),
    received_at  timestamptz NOT NULL,
    PRIMARY KEY (device_id, ts)
);

-- Commands to terminals: text to the driver (0x8300), parameters (0x8103), a position
-- query (0x8201), take a photo (0x8801). Queued here by the API, the CLI or a rule's action
-- when a violation opens; published by the dispatcher; their state comes back from the
-- gateway that holds the terminal (…/command/state) and only ever moves forward.
CREATE TABLE IF NOT EXISTS terminal_commands (
    id            text        PRIMARY KEY,
    device_id     text        NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('text', 'params', 'position', 'capture')),
    args          jsonb       NOT NULL DEFAULT '{}',
    state         text        NOT NULL DEFAULT 'queued' CHECK (state IN (
                      'queued', 'published', 'sent', 'delivered', 'failed', 'unsupported',
                      'timeout')),
    detail        text,
    result        jsonb,
    requested_by  text        NOT NULL,   -- an account, or 'rule:OFF_ROUTE' for an action
    violation_id  text,                   -- the violation an action was taken for
    timeout_s     real        NOT NULL CHECK (timeout_s > 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,
    sent_at       timestamptz,
    answered_at   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS terminal_commands_device ON terminal_commands (device_id, created_at);
CREATE INDEX IF NOT EXISTS terminal_commands_pending ON terminal_commands (created_at)
    WHERE state IN ('queued', 'published', 'sent');
-- one action of each kind per violation, however many workers see it open
CREATE UNIQUE INDEX IF NOT EXISTS terminal_commands_action
    ON terminal_commands (violation_id, kind) WHERE violation_id IS NOT NULL;

-- Evidence bundles, sealed: the head of each violation's hash chain (the violation, its
-- track and sensor timeline, its photos' bytes) and the chain of seals itself (each seal
-- hashes the one before), so a changed fix, photo or seal after the fact shows
-- (docs/evidence.md). The window is the one the bundle was cut with, so a later change of
-- [rules] evidence_s does not look like tampering. Append-only, like audit_log: the chain
-- is for whoever gets past this (an owner can disable triggers), the trigger for everyone
-- else.
CREATE TABLE IF NOT EXISTS evidence_seals (
    seq           bigserial   PRIMARY KEY,
    violation_id  text        NOT NULL UNIQUE,
    items         jsonb       NOT NULL,   -- [{kind, key, sha256[, content]}, …] in chain order
    head          text        NOT NULL,   -- the chain's last hash
    window_from   timestamptz NOT NULL,   -- the track's window: start − evidence_s …
    window_to     timestamptz NOT NULL,   -- … end + evidence_s
    prev_seal     text        NOT NULL,   -- the seal hash of the seal before ('' for the first)
    seal          text        NOT NULL,   -- sha256(prev_seal|violation|head|sealed_at|sealed_by)
    sealed_by     text        NOT NULL,   -- an account, or 'system' (sealed when due)
    sealed_at     timestamptz NOT NULL
);

CREATE OR REPLACE FUNCTION evidence_seals_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'evidence_seals is append-only: % refused', TG_OP;
END $$;
DROP TRIGGER IF EXISTS evidence_seals_no_change ON evidence_seals;
CREATE TRIGGER evidence_seals_no_change BEFORE UPDATE OR DELETE ON evidence_seals
    FOR EACH ROW EXECUTE FUNCTION evidence_seals_append_only();
DROP TRIGGER IF EXISTS evidence_seals_no_truncate ON evidence_seals;
CREATE TRIGGER evidence_seals_no_truncate BEFORE TRUNCATE ON evidence_seals
    FOR EACH STATEMENT EXECUTE FUNCTION evidence_seals_append_only();

-- ended violations by end, for the seals due (store/evidence.py seal_due)
CREATE INDEX IF NOT EXISTS violations_closed_end ON violations (end_ts) WHERE state = 'closed';
