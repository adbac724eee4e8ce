-- Alert delivery (issue #7): why a subscription was switched off, when a row was last tried,
-- and the delivery numbers operators watch.
ALTER TABLE alert_subscriptions ADD COLUMN IF NOT EXISTS disabled_reason text;
ALTER TABLE alert_subscriptions ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL
    DEFAULT now();
ALTER TABLE alert_outbox ADD COLUMN IF NOT EXISTS last_attempt_at timestamptz;
CREATE INDEX IF NOT EXISTS alert_outbox_subscription_due ON alert_outbox (subscription_id, due_at)
    WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS alert_outbox_created ON alert_outbox (created_at);

-- one row per subscription: what is waiting, what went through, what failed
CREATE OR REPLACE VIEW alert_delivery_stats AS
SELECT s.id AS subscription_id, s.enabled, s.disabled_reason,
       count(o.id) FILTER (WHERE o.state = 'pending') AS pending,
       count(o.id) FILTER (WHERE o.state = 'delivered') AS delivered,
       count(o.id) FILTER (WHERE o.state = 'failed') AS failed,
       count(o.id) FILTER (WHERE o.state = 'dead') AS dead,
       coalesce(sum(o.attempts), 0) AS attempts,
       coalesce(sum(o.attempts) FILTER (WHERE o.state = 'delivered'), 0)
           - count(o.id) FILTER (WHERE o.state = 'delivered') AS retries_before_success,
       extract(epoch FROM now() - min(o.created_at) FILTER (WHERE o.state = 'pending'))
           AS oldest_pending_s
FROM alert_subscriptions s LEFT JOIN alert_outbox o ON o.subscription_id = s.id
GROUP BY s.id, s.enabled, s.disabled_reason;
