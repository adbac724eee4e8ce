-- Rule state per vehicle (issue #12): the snapshot an ingest worker writes in the same
-- transaction as a batch (periodically, when it first sees a vehicle, and on shutdown) and
-- the next owner of the vehicle restores after a rebalance or a crash (docs/scaling.md).
CREATE TABLE IF NOT EXISTS rule_state (
    device_id     text PRIMARY KEY,
    owner         text NOT NULL,         -- the worker that wrote it (its MQTT client id)
    evaluated_to  timestamptz,           -- device time of the newest fix the state reflects
    received_to   timestamptz NOT NULL,  -- newest receive time in the batch it was written with
    state         jsonb NOT NULL,        -- rules.engine export_states(): permits/zones by id
    saved_at      timestamptz NOT NULL DEFAULT now()
);
