-- Alert outbox (transactional outbox for enforcement webhooks, issue #7): a violation event
-- and its alerts are written in the same transaction, and a delivery worker drains them.
CREATE TABLE IF NOT EXISTS alert_subscriptions (
    id          text PRIMARY KEY,
    url         text NOT NULL,
    secret      text NOT NULL,  -- whsec_…; never logged
    filters     jsonb NOT NULL DEFAULT '{}'::jsonb,  -- rules, severity, companies, zones
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS alert_outbox (
    id               bigserial PRIMARY KEY,
    webhook_id       text NOT NULL,  -- stable per (event, subscription): receivers dedupe on it
    subscription_id  text NOT NULL REFERENCES alert_subscriptions (id),
    violation_id     text NOT NULL,
    event            text NOT NULL,  -- opened, updated, closed, retracted
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    due_at           timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'failed', 'dead')),
    last_status      integer,
    last_error       text,
    delivered_at     timestamptz,
    UNIQUE (webhook_id)
);
CREATE INDEX IF NOT EXISTS alert_outbox_due ON alert_outbox (due_at) WHERE state = 'pending';
REVOKE SELECT ON alert_subscriptions FROM muckwatch_analyst;  -- secrets stay with operators
