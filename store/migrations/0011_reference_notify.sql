-- Live reference data (issue #22): a change to permits, their suspensions, vehicles or
-- fences notifies the channel muckwatch_reference (payload: the table), once per statement;
-- `muckwatch run` listens and re-reads them while running (docs/permits.md). NOTIFY is
-- delivered at commit, so the ingest never sees a change that was rolled back.
CREATE OR REPLACE FUNCTION notify_reference_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('muckwatch_reference', TG_TABLE_NAME);
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS reference_changed ON permits;
CREATE TRIGGER reference_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON permits
    FOR EACH STATEMENT EXECUTE FUNCTION notify_reference_change();
DROP TRIGGER IF EXISTS reference_changed ON permit_suspensions;
CREATE TRIGGER reference_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON permit_suspensions FOR EACH STATEMENT EXECUTE FUNCTION notify_reference_change();
DROP TRIGGER IF EXISTS reference_changed ON vehicles;
CREATE TRIGGER reference_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vehicles
    FOR EACH STATEMENT EXECUTE FUNCTION notify_reference_change();
DROP TRIGGER IF EXISTS reference_changed ON fences;
CREATE TRIGGER reference_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON fences
    FOR EACH STATEMENT EXECUTE FUNCTION notify_reference_change();
