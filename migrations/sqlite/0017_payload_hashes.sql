-- The column PostgreSQL fills with each payload's SHA-256 as it is appended (see
-- migrations/postgres/0017_payload_hashes.sql, docs/adr/0028). SQLite has no SHA-256 function and
-- its triggers cannot set a column of the row being inserted, so here the column stays NULL and
-- the sealer hashes the payloads it reads, as before: reading them costs no network transfer and
-- no decompression in an embedded database. The column exists so that both backends keep the same
-- tables and columns (migrations/README.md, rule 3).
ALTER TABLE event_log ADD COLUMN payload_sha256 BLOB;
