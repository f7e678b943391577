-- PostgreSQL only (see migrations/postgres/0013_generic_ingest_read.sql): SQLite has no plan
-- cache modes; its prepared statements are reused by sqlx. This file keeps the two directories
-- in step.
SELECT 1;
