-- The terminal's alarm word (issue #24): JT/T 808's 0x0200 alarm DWORD, carried on the wire
-- format as "alarm" (docs/protocol.md), stored as it came; NULL when not reported. bigint:
-- bit 31 set does not fit PostgreSQL's signed integer.
ALTER TABLE telemetry ADD COLUMN IF NOT EXISTS alarm bigint;
