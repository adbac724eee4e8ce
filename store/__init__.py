"""PostgreSQL/TimescaleDB: migrations, the batch writer, reference data. Knows SQL, not MQTT."""
