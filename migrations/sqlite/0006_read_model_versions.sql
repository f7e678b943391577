-- Every read-model row carries a version, bumped by every write. Ingestion reads a batch's
-- states, folds them in the service, then writes them back only where the version is still the
-- one it read; a row written meanwhile (another instance, the catch-up projector) fails the
-- check and the batch is folded again from a fresh read (docs/adr/0016). Existing rows start
-- at 1; a row that does not exist counts as version 0.
--
-- SQLite has a single writer, so its checks never fail, but the column is the same on both
-- backends. PostgreSQL also gets the function that writes a batch in one statement; SQLite
-- writes a batch in one transaction on its writer connection instead.
ALTER TABLE read_models ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
