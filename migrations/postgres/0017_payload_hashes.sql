-- Each entry's payload hash, computed by the database as the entry is appended (docs/adr/0028).
--
-- A leaf of the sealed log commits to its entry's payload only through the payload's SHA-256
-- (ADR 18). Since 0016's build the sealer has asked PostgreSQL for that hash instead of the
-- payload (ADR 27), but the hash was still computed at read time: every pass decompressed and
-- hashed hundreds of payloads in one burst, and under load that burst was the ingest path's
-- slowest percentile. The hash is now computed once, while the payload is being inserted and is
-- in memory uncompressed anyway, and stored beside it.
--
-- A trigger, not the insert statements: every path that appends (the ingest functions of 0008
-- and 0016, the single append, a rebuild's import) gets the same column, and no client can store
-- a hash of its own choosing, since the trigger overwrites whatever the insert supplied. With the
-- log's other triggers (0001) the column can never change afterwards either.
--
-- Entries logged before this migration keep NULL (the log's rows cannot be rewritten); the
-- sealer computes their hash as before. A new nullable column without a default is a catalog
-- change only: the table is not rewritten.
ALTER TABLE event_log ADD COLUMN payload_sha256 BYTEA;

CREATE FUNCTION event_log_hash_payload() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.payload_sha256 := sha256(convert_to(NEW.payload, 'UTF8'));
    RETURN NEW;
END;
$$;

CREATE TRIGGER event_log_hash_payload
    BEFORE INSERT ON event_log
    FOR EACH ROW EXECUTE FUNCTION event_log_hash_payload();
