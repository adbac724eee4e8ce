-- People act on violations (issue #21): API accounts, review, appeals, enforcement cases,
-- the inbound webhook's idempotency keys and an append-only audit log. docs/api.md, docs/sql.md.

-- Accounts of `muckwatch serve`. The token is shown once by `muckwatch accounts add`; only
-- its SHA-256 is kept (tokens are 32 random bytes, so a plain hash cannot be brute-forced).
CREATE TABLE IF NOT EXISTS api_accounts (
    id          text PRIMARY KEY,
    role        text NOT NULL CHECK (role IN ('officer', 'supervisor', 'company', 'association',
                                              'public', 'analyst')),
    company_id  text REFERENCES companies (id),
    districts   text[] NOT NULL DEFAULT '{}',
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CONSTRAINT api_accounts_company CHECK ((role = 'company') = (company_id IS NOT NULL)),
    CONSTRAINT api_accounts_districts CHECK (role <> 'officer' OR cardinality(districts) > 0)
);
REVOKE ALL ON api_accounts FROM muckwatch_analyst, muckwatch_company;

-- Review: every violation starts 'new'; an officer confirms or dismisses it with a reason.
-- The pipeline's upsert leaves reviewed rows alone (store/database.py), so a replay or late
-- data never re-opens a reviewed violation or changes its review.
ALTER TABLE violations ADD COLUMN IF NOT EXISTS review text NOT NULL DEFAULT 'new';
ALTER TABLE violations ADD COLUMN IF NOT EXISTS review_reason text;
ALTER TABLE violations ADD COLUMN IF NOT EXISTS review_note text;
ALTER TABLE violations ADD COLUMN IF NOT EXISTS reviewed_by text;
ALTER TABLE violations ADD COLUMN IF NOT EXISTS reviewed_at timestamptz;
ALTER TABLE violations DROP CONSTRAINT IF EXISTS violations_review_check;
ALTER TABLE violations ADD CONSTRAINT violations_review_check
    CHECK (review IN ('new', 'confirmed', 'dismissed'));
CREATE INDEX IF NOT EXISTS violations_review_queue ON violations (review, severity, start_ts);

CREATE TABLE IF NOT EXISTS review_reasons (
    code      text PRIMARY KEY,
    decision  text NOT NULL CHECK (decision IN ('confirm', 'dismiss')),
    label_en  text NOT NULL,
    label_zh  text NOT NULL,
    officer   boolean NOT NULL DEFAULT true  -- false: set by the system only (appeals)
);
INSERT INTO review_reasons (code, decision, label_en, label_zh, officer) VALUES
    ('evidence_clear', 'confirm', 'the track and sensors show it', '轨迹与传感器证据确凿', true),
    ('patrol_witnessed', 'confirm', 'a patrol saw it', '巡查人员现场确认', true),
    ('photo_evidence', 'confirm', 'photos show it', '现场照片取证', true),
    ('other_confirm', 'confirm', 'other (see note)', '其他（见备注）', true),
    ('authorised_detour', 'dismiss', 'authorised detour', '经批准绕行', true),
    ('road_closure', 'dismiss', 'road closed, no other way', '道路封闭', true),
    ('sensor_fault', 'dismiss', 'sensor fault', '传感器故障', true),
    ('gnss_drift', 'dismiss', 'GNSS drift or jump', '定位漂移', true),
    ('duplicate', 'dismiss', 'duplicate of another violation', '重复记录', true),
    ('permit_data_error', 'dismiss', 'the permit data was wrong', '核准数据有误', true),
    ('emergency', 'dismiss', 'emergency', '紧急情况', true),
    ('other', 'dismiss', 'other (see note)', '其他（见备注）', true),
    ('appeal_upheld', 'confirm', 'appeal rejected, violation stands', '申诉驳回', false),
    ('appeal_overturned', 'dismiss', 'appeal accepted', '申诉成立', false)
ON CONFLICT (code) DO NOTHING;

-- How long a violation nobody reviewed waits before it counts in the credit score
-- ([scoring] unreviewed_after_days, written here by `muckwatch db migrate`).
CREATE TABLE IF NOT EXISTS score_policy (
    singleton         boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    unreviewed_after  interval NOT NULL DEFAULT interval '7 days'
);
INSERT INTO score_policy (singleton) VALUES (true) ON CONFLICT DO NOTHING;

-- Violations that count: not retracted, started in the 365 days up to as_of, and either
-- confirmed or left unreviewed for unreviewed_after. Dismissed ones (an officer's decision or
-- an overturned appeal) never count.
CREATE OR REPLACE FUNCTION scored_violations(as_of timestamptz)
RETURNS TABLE (id text, rule text, severity smallint, device_id text, plate text,
               company_id text, start_ts timestamptz, points numeric)
LANGUAGE sql STABLE AS $$
    SELECT v.id, v.rule, v.severity, v.device_id, coalesce(v.plate, ve.plate),
           coalesce(v.company_id, ve.company_id), v.start_ts, coalesce(d.points, 0)
    FROM violations v
    LEFT JOIN vehicles ve ON ve.device_id = v.device_id
    LEFT JOIN score_deductions d ON d.rule = v.rule AND d.severity = v.severity
    WHERE v.state <> 'retracted'
      AND v.start_ts > as_of - interval '365 days' AND v.start_ts <= as_of
      AND (v.review = 'confirmed'
           OR (v.review = 'new'
               AND v.start_ts <= as_of - (SELECT unreviewed_after FROM score_policy)))
$$;

-- Appeals: a company contests a violation; an officer upholds (the violation stands) or
-- overturns it (the violation is dismissed and leaves the score). One pending appeal per
-- violation.
CREATE TABLE IF NOT EXISTS appeals (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    violation_id   text NOT NULL,
    company_id     text NOT NULL,
    text           text NOT NULL,
    state          text NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'upheld', 'overturned')),
    filed_by       text NOT NULL,
    filed_at       timestamptz NOT NULL DEFAULT now(),
    decided_by     text,
    decided_at     timestamptz,
    decision_note  text
);
CREATE UNIQUE INDEX IF NOT EXISTS appeals_one_pending ON appeals (violation_id)
    WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS appeals_company ON appeals (company_id, filed_at);

-- Attachments are files on disk named by their SHA-256 ([api] uploads_dir); the row says
-- what the company sent.
CREATE TABLE IF NOT EXISTS appeal_attachments (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    appeal_id     bigint NOT NULL REFERENCES appeals (id),
    sha256        text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes    bigint NOT NULL,
    content_type  text NOT NULL,
    filename      text NOT NULL,
    added_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS appeal_attachments_appeal ON appeal_attachments (appeal_id);

-- Enforcement cases: confirmed violations of one vehicle or one company, handled by a
-- district team. new → dispatched (team, due) → handled (action, penalty) → closed;
-- withdrawn from any state before closed.
CREATE TABLE IF NOT EXISTS cases (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id       text NOT NULL,
    plate            text,  -- NULL: a case against the company, over several vehicles
    district_id      text,
    state            text NOT NULL DEFAULT 'new'
                     CHECK (state IN ('new', 'dispatched', 'handled', 'closed', 'withdrawn')),
    team             text,
    due_at           timestamptz,
    action           text,
    penalty_yuan     numeric CHECK (penalty_yuan >= 0),
    note             text,
    external_ref     text,
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    dispatched_at    timestamptz,
    handled_at       timestamptz,
    closed_at        timestamptz,
    withdrawn_at     timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS cases_district_due ON cases (district_id, due_at);
CREATE INDEX IF NOT EXISTS cases_company ON cases (company_id, created_at);

CREATE TABLE IF NOT EXISTS case_violations (
    case_id       bigint NOT NULL REFERENCES cases (id),
    violation_id  text NOT NULL,
    PRIMARY KEY (case_id, violation_id)
);
CREATE INDEX IF NOT EXISTS case_violations_violation ON case_violations (violation_id);

-- Closure (按期结案率) per district and month of the due date (the session's TimeZone):
-- dispatched cases, not withdrawn. on_time_rate = closed on time ÷ (closed + overdue).
CREATE OR REPLACE VIEW case_closure_monthly AS
    SELECT district_id,
           date_trunc('month', due_at)::date AS month,
           count(*) AS due,
           count(*) FILTER (WHERE state = 'closed' AND closed_at <= due_at) AS closed_on_time,
           count(*) FILTER (WHERE state = 'closed' AND closed_at > due_at) AS closed_late,
           count(*) FILTER (WHERE state <> 'closed' AND due_at < now()) AS overdue,
           count(*) FILTER (WHERE state <> 'closed' AND due_at >= now()) AS open_not_due,
           round(count(*) FILTER (WHERE state = 'closed' AND closed_at <= due_at)::numeric
                 / nullif(count(*) FILTER (WHERE state = 'closed' OR due_at < now()), 0), 3)
               AS on_time_rate
    FROM cases
    WHERE due_at IS NOT NULL AND state <> 'withdrawn'
    GROUP BY 1, 2;

-- An external enforcement system's updates, by Standard Webhooks message id: a replayed
-- message is answered with the stored result and applied once.
CREATE TABLE IF NOT EXISTS inbound_webhooks (
    message_id   text PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    case_id      bigint,
    status       smallint NOT NULL,
    result       jsonb NOT NULL
);

-- Every action of a person or system through the API: who, when, what, before → after.
-- Append-only: updates, deletes and truncation are refused by triggers, for everyone.
CREATE TABLE IF NOT EXISTS audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor        text NOT NULL,
    role         text NOT NULL,
    action       text NOT NULL,
    resource     text NOT NULL,
    resource_id  text,
    before       jsonb,
    after        jsonb
);
CREATE INDEX IF NOT EXISTS audit_log_resource ON audit_log (resource, resource_id, at);

CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END $$;
DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

GRANT SELECT ON review_reasons, score_policy TO muckwatch_company;
