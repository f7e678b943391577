-- Storage settings for the hot path (docs/adr/0016, README "Performance").
--
-- 1. Read models are updated in place far more often than they are inserted, and an update
--    rarely changes an indexed column (customer, user, status). With room left on each page
--    PostgreSQL writes such an update as a heap-only tuple: no new entry in any of the table's
--    four indexes. At 100 % fill (the default) there is never room, so every update wrote all
--    four. The setting applies to pages written from now on.
ALTER TABLE read_models SET (fillfactor = 80);

-- 2. Payloads and states above 2 kB are compressed when stored. lz4 compresses several times
--    faster than pglz, the default, at a similar ratio for JSON; every webhook pays the
--    compression, and the sealer, rebuild and exports pay the decompression. A server built
--    without lz4, or older than PostgreSQL 14 (no per-column compression), keeps pglz: the
--    values read back are the same either way. The statements are run by EXECUTE so that an
--    older server's parser meets them only inside the handler.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE event_log ALTER COLUMN payload SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE read_models ALTER COLUMN state SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    RAISE NOTICE 'per-column lz4 compression is not available on this server; values stay compressed with pglz';
END
$$;
