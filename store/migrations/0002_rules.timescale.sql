-- trips are keyed by (id, left_at): a hypertable on the device time the haul started.
SELECT create_hypertable('trips', by_range('left_at', INTERVAL '30 days'), if_not_exists => true);
